"""The team desk over real sockets: two kefu processes on Redis + MariaDB (and the embedded
default where it matters): assignment, presence, limits, the claim race, transfer, resolve and
reopen, typing, private notes, disabling an agent, profiles and legacy agent sockets."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.support.wsclient import WsClient

PASSWORD = "correct-horse-1"
API_KEY = "team-secret"


def team(d, n: int = 2, **env: str):  # type: ignore[no-untyped-def]
    """`n` kefu processes of one deployment, and an admin `root`."""
    servers = [d.server(KEFU_API_KEY=API_KEY, KEFU_TYPING_INTERVAL="0.2", **env) for _ in range(n)]
    servers[0].cli("create-agent", "root", "--admin", "--password", PASSWORD)
    return servers


def admin_http(srv) -> httpx.Client:  # type: ignore[no-untyped-def]
    return httpx.Client(base_url=srv.base_url, headers={"Authorization": f"Bearer {srv.agent_token('root')}"})


def make_agent(srv, name: str, max_open: int | None = None) -> int:  # type: ignore[no-untyped-def]
    with admin_http(srv) as h:
        body: dict[str, Any] = {"name": name, "password": PASSWORD}
        if max_open is not None:
            body["max_open"] = max_open
        r = h.post("/api/admin/agents", json=body)
        assert r.status_code == 201, r.text
        return int(r.json()["agent"]["id"])


async def desk(srv, name: str, all_: bool = False) -> WsClient:  # type: ignore[no-untyped-def]
    """An agent's team console socket: joined the desk, roster received."""
    ws = await WsClient.connect(srv.ws_url, await asyncio.to_thread(srv.agent_token, name))
    await ws.send({"cmd": "desk", "all": all_})
    reply = await ws.recv_until(lambda f: f.get("cmd") == "desk")
    ws.roster = reply["agents"]  # type: ignore[attr-defined]
    return ws


async def user(srv, code: str) -> tuple[WsClient, str]:  # type: ignore[no-untyped-def]
    token, openid = await asyncio.to_thread(srv.user_token, code)
    ws = await WsClient.connect(srv.ws_url, token)
    ws.token = token  # type: ignore[attr-defined]
    return ws, openid


async def say(ws: WsClient, text: str, cmid: str) -> dict:
    await ws.send({"type": 2, "msg": text, "cmid": cmid})
    return await ws.recv_until(lambda f: f.get("cmd") == "ack" and f.get("cmid") == cmid)


def status_of(ws: WsClient, openid: str, status: str):  # type: ignore[no-untyped-def]
    return ws.recv_until(lambda f: f.get("cmd") == "conversation" and f["openid"] == openid
                         and f["status"] == status, timeout=8)


def view(srv, name: str, which: str) -> dict:  # type: ignore[no-untyped-def]
    token = srv.agent_token(name)
    r = httpx.get(srv.base_url + "/api/desk/conversations", params={"view": which},
                  headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    return r.json()


async def test_auto_assignment_follows_presence_and_limits_across_nodes(redis_deployment):
    a, b = team(redis_deployment)
    make_agent(a, "alice", max_open=1)
    make_agent(a, "bob")
    alice = await desk(a, "alice")
    bob = await desk(b, "bob")
    await bob.send({"cmd": "presence", "status": "away"})
    await alice.recv_until(lambda f: f.get("cmd") == "presence" and f["agent"]["name"] == "bob"
                           and f["status"] == "away")

    u1, o1 = await user(a, "first-customer")
    await say(u1, "你好", "u1")
    got = await status_of(alice, o1, "assigned")
    assert got["assignee"]["name"] == "alice" and got["event"] == "assigned"
    event = await alice.recv_until(lambda f: f.get("kind") == "event" and f["openid"] == o1)
    assert event["meta"]["event"] == "assigned" and event["meta"]["to"]["name"] == "alice"

    # alice is at her limit (1) and bob is away: the next conversation waits in the queue.
    u2, o2 = await user(b, "second-customer")
    await say(u2, "在吗", "u2")
    await asyncio.sleep(1.0)
    queue = await asyncio.to_thread(view, a, "alice", "unassigned")
    assert [c["openid"] for c in queue["conversations"]] == [o2]
    assert queue["counts"]["unassigned"] == 1 and queue["counts"]["mine"] == 1
    # Waiting conversations reach every available agent: alice (online) gets u2's messages.
    await say(u2, "有人吗", "u2b")
    assert (await alice.recv_until(lambda f: f.get("msg") == "有人吗"))["openid"] == o2

    # bob comes back: the queue drains to him (on the other node).
    await bob.send({"cmd": "presence", "status": "online"})
    got = await status_of(bob, o2, "assigned")
    assert got["assignee"]["name"] == "bob"
    mine = await asyncio.to_thread(view, b, "bob", "mine")
    assert [c["openid"] for c in mine["conversations"]] == [o2]
    assert mine["conversations"][0]["assignee"]["name"] == "bob"

    # Now u1's messages go to alice only, u2's to bob only.
    await say(u1, "alice only", "u1b")
    await say(u2, "bob only", "u2c")
    either = ("alice only", "bob only")
    assert (await alice.recv_until(lambda f: f.get("msg") in either))["msg"] == "alice only"
    assert (await bob.recv_until(lambda f: f.get("msg") in either))["msg"] == "bob only"
    assert [f for f in await alice.nothing_for(0.5) if f.get("msg") == "bob only"] == []

    # Offline: bob's last socket closes and alice hears of it.
    await bob.close()
    await alice.recv_until(lambda f: f.get("cmd") == "presence" and f["agent"]["name"] == "bob"
                           and f["status"] == "offline", timeout=8)


async def test_two_claims_at_once_one_wins_the_other_sees_who(redis_deployment):
    a, b = team(redis_deployment, KEFU_AUTO_ASSIGN="false")
    make_agent(a, "carol")
    make_agent(a, "dave")
    carol = await desk(a, "carol")
    dave = await desk(b, "dave")
    u, openid = await user(a, "racing-customer")
    await say(u, "anyone?", "r1")
    for ws in (carol, dave):
        await ws.recv_until(lambda f: f.get("msg") == "anyone?")
    await asyncio.gather(carol.send({"cmd": "claim", "openid": openid, "cmid": "c"}),
                         dave.send({"cmd": "claim", "openid": openid, "cmid": "d"}))
    answers = []
    for ws, cmid in ((carol, "c"), (dave, "d")):
        answers.append(await ws.recv_until(lambda f, c=cmid: f.get("cmid") == c))
    won = [f for f in answers if f["cmd"] == "conversation"]
    lost = [f for f in answers if f["cmd"] == "error"]
    assert len(won) == 1 and len(lost) == 1, answers
    assert lost[0]["code"] == "taken" and lost[0]["assignee"]["name"] == won[0]["assignee"]["name"]
    winner, loser = (carol, dave) if won[0]["assignee"]["name"] == "carol" else (dave, carol)
    # The loser may not answer it; the winner may.
    await loser.send({"type": 1, "openid": openid, "msg": "me too", "cmid": "x"})
    refused = await loser.recv_until(lambda f: f.get("cmid") == "x")
    assert refused["cmd"] == "error" and refused["code"] == "not_assignee"
    await winner.send({"type": 1, "openid": openid, "msg": "我来", "cmid": "y"})
    assert (await winner.recv_until(lambda f: f.get("cmid") == "y"))["cmd"] == "ack"
    assert (await u.recv_until(lambda f: f.get("msg") == "我来"))["from"] == "agent"


async def test_transfer_resolve_reopen_typing_and_notes_the_user_never_sees(redis_deployment):
    a, b = team(redis_deployment, KEFU_AUTO_ASSIGN="false")
    make_agent(a, "erin")
    frank_id = make_agent(a, "frank")
    erin = await desk(a, "erin")
    frank = await desk(b, "frank")
    u, openid = await user(b, "vip-customer")
    await say(u, "订单有问题", "v1")
    await erin.send({"cmd": "claim", "openid": openid, "cmid": "cl"})
    assert (await erin.recv_until(lambda f: f.get("cmid") == "cl"))["status"] == "assigned"

    # Typing both ways, only to the other side.
    await u.send({"cmd": "typing"})
    t = await erin.recv_until(lambda f: f.get("cmd") == "typing")
    assert t == {"cmd": "typing", "openid": openid, "from": "user"}
    await erin.send({"cmd": "typing", "openid": openid})
    t = await u.recv_until(lambda f: f.get("cmd") == "typing")
    assert t == {"cmd": "typing", "openid": openid, "from": "agent", "agent": "erin"}

    # A private note: acked, seen by agents, never by the user (socket, sync, history).
    await erin.send({"cmd": "note", "openid": openid, "msg": "VIP：先退款", "cmid": "n1"})
    ack = await erin.recv_until(lambda f: f.get("cmid") == "n1")
    assert ack["cmd"] == "ack"
    await erin.send({"cmd": "transfer", "openid": openid, "to": frank_id, "note": "VIP order", "cmid": "t"})
    assert (await erin.recv_until(lambda f: f.get("cmid") == "t"))["assignee"]["name"] == "frank"
    # The note went to the agents following the conversation then (erin); frank reads it in history.
    ev = await frank.recv_until(lambda f: f.get("kind") == "event" and f["meta"]["event"] == "transferred")
    assert ev["meta"]["note"] == "VIP order" and ev["meta"]["by"]["name"] == "erin"
    assert ev["msg"] == "transferred to frank: VIP order"

    await frank.send({"type": 1, "openid": openid, "msg": "已为您退款", "cmid": "f1"})
    await frank.recv_until(lambda f: f.get("cmid") == "f1")
    await frank.send({"cmd": "resolve", "openid": openid, "cmid": "rs"})
    assert (await frank.recv_until(lambda f: f.get("cmid") == "rs"))["status"] == "resolved"
    resolved = await asyncio.to_thread(view, a, "erin", "resolved")
    assert [c["openid"] for c in resolved["conversations"]] == [openid]

    # A new message reopens it (and with auto-assignment off it waits in the queue).
    await say(u, "还有一个问题", "v2")
    await status_of(erin, openid, "open")
    ev = await erin.recv_until(lambda f: f.get("kind") == "event" and f["meta"]["event"] == "reopened")
    assert ev["meta"]["by"] is None

    seen = [f for f in await u.nothing_for(0.5)]
    seen_by_user = [f for f in seen if f.get("kind") in ("note", "event") or f.get("cmd") == "conversation"]
    assert seen_by_user == []
    await u.send({"cmd": "sync", "after": 0})
    synced = await u.recv_until(lambda f: f.get("cmd") == "sync")
    assert [m["msg"] for m in synced["messages"]] == ["订单有问题", "已为您退款", "还有一个问题"]
    r = httpx.get(f"{a.base_url}/api/conversations/{openid}/messages",
                  headers={"Authorization": f"Bearer {u.token}"})  # type: ignore[attr-defined]
    assert [m["msg"] for m in r.json()["messages"]] == ["还有一个问题", "已为您退款", "订单有问题"]
    h = httpx.get(f"{b.base_url}/api/conversations/{openid}/messages", params={"kinds": "all"},
                  headers={"Authorization": f"Bearer {b.agent_token('frank')}"}).json()["messages"]
    assert [m["id"] for m in h if m.get("kind") == "note" and m["msg"] == "VIP：先退款"] == [ack["id"]]
    events = [m["meta"]["event"] for m in h if m.get("kind") == "event"][::-1]
    assert events == ["claimed", "transferred", "resolved", "reopened"]


async def test_a_disabled_agent_loses_sockets_and_conversations_go_back(redis_deployment):
    a, b = team(redis_deployment)
    gina = make_agent(a, "gina")
    gina_ws = await desk(a, "gina")
    u, openid = await user(b, "orphan")
    await say(u, "hello", "o1")
    await status_of(gina_ws, openid, "assigned")
    root = await desk(b, "root", all_=True)
    await root.send({"cmd": "presence", "status": "away"})  # root is not to take it over
    await asyncio.sleep(0.3)
    with admin_http(a) as h:
        assert h.patch(f"/api/admin/agents/{gina}", json={"disabled": True}).status_code == 200
    code, _ = await gina_ws.closed(timeout=8)
    assert code == 4401
    got = await status_of(root, openid, "open")
    assert got["event"] == "requeued" and got["note"] == "disabled"
    queue = await asyncio.to_thread(view, a, "root", "unassigned")
    assert [c["openid"] for c in queue["conversations"]] == [openid]


async def test_an_agent_disabled_from_the_cli_hands_back_their_conversations(tmp_path, request):
    """Embedded: the CLI is another process with no broker; the server's periodic re-check closes
    the agent's socket and requeues what they held."""
    from tests.conftest import Deployment
    d = Deployment("embedded", tmp_path, request.node.name)
    try:
        (srv,) = team(d, 1, KEFU_AGENT_RECHECK_INTERVAL="0.5")
        make_agent(srv, "hank")
        hank = await desk(srv, "hank")
        u, openid = await user(srv, "cli-orphan")
        await say(u, "hello", "c1")
        await status_of(hank, openid, "assigned")
        root = await desk(srv, "root", all_=True)
        await root.send({"cmd": "presence", "status": "away"})
        await asyncio.sleep(0.3)
        await asyncio.to_thread(srv.cli, "disable-agent", "hank")
        assert (await hank.closed(timeout=8))[0] == 4401
        got = await status_of(root, openid, "open")
        assert got["event"] == "requeued"
    finally:
        d.close()


async def test_backend_profile_and_legacy_agent_sockets(deployment):
    srv = team(deployment, 1)[0]
    make_agent(srv, "hank")
    make_agent(srv, "ivy")
    u, openid = await user(srv, "profiled")
    r = httpx.put(f"{srv.base_url}/api/profiles/{openid}", headers={"X-Api-Key": API_KEY},
                  json={"name": "王小明", "avatar": "https://img.example/1.png", "phone": "13800000000",
                        "tags": ["VIP"], "attrs": {"order": "A1001", "level": "金卡"}})
    assert r.status_code == 200, r.text
    assert httpx.put(f"{srv.base_url}/api/profiles/{openid}", json={"name": "x"}).status_code == 401

    hank = await WsClient.connect(srv.ws_url, srv.agent_token("hank"), v2=False)  # seed protocol
    await asyncio.sleep(0.5)  # no hello on a legacy socket: give its subscription time
    await say(u, "legacy?", "l1")
    assert (await hank.recv())["msg"] == "legacy?"  # waiting: every available agent gets it
    await asyncio.sleep(0.5)
    rows = await asyncio.to_thread(view, srv, "hank", "mine")
    assert rows["conversations"][0]["profile"] == {"name": "王小明", "avatar": "https://img.example/1.png",
                                                   "tags": ["VIP"]}
    side = httpx.get(f"{srv.base_url}/api/customers/{openid}",
                     headers={"Authorization": f"Bearer {srv.agent_token('hank')}"}).json()
    assert side["profile"]["attrs"] == {"order": "A1001", "level": "金卡"} and side["status"] == "assigned"

    # Another agent's legacy socket does not get the conversation hank holds; hank's does.
    ivy = await WsClient.connect(srv.ws_url, srv.agent_token("ivy"), v2=False)
    await asyncio.sleep(0.5)
    await say(u, "for hank", "l2")
    assert (await hank.recv())["msg"] == "for hank"
    assert await ivy.nothing_for(0.5) == []


@pytest.mark.parametrize("who", ["user", "anonymous"])
async def test_only_agents_use_the_desk(server, who):  # type: ignore[no-untyped-def]
    if who == "user":
        u, _ = await user(server, "nosy")
        await u.send({"cmd": "claim", "openid": "o_x", "cmid": "z"})
        err = await u.recv_until(lambda f: f.get("cmd") == "error")
        assert err["code"] == "forbidden" and err["cmid"] == "z"
    else:
        assert httpx.get(server.base_url + "/api/desk/conversations").status_code == 401
