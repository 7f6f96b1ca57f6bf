"""Pictures through real servers: upload as `wx.uploadFile` sends it, image messages over real
sockets (ack, relay, legacy text, sync, history), signed URLs (who may have them, expiry,
tampering), what is refused (a renamed document, a decompression bomb, another user's picture),
and a picture uploaded on one node served by another (Redis + MariaDB, blobs in the database)."""

from __future__ import annotations

import asyncio
import io
import time

import httpx
from PIL import Image

from tests.support import images
from tests.support.wsclient import WsClient

TTL = "3"  # seconds a signed link lives here (KEFU_MEDIA_URL_TTL), so expiry is quick to see


def upload(srv, token: str, data: bytes, filename: str = "photo.jpg", openid: str | None = None,  # type: ignore[no-untyped-def]
           ctype: str = "image/jpeg") -> httpx.Response:
    """POST /api/media as wx.uploadFile does: multipart, field `file`, plus a form field."""
    params = {"openid": openid} if openid else None
    return httpx.post(srv.base_url + "/api/media", params=params, files={"file": (filename, data, ctype)},
                      data={"source": "chooseMedia"}, headers={"Authorization": f"Bearer {token}"})


def sign(srv, token: str, ids: list[str]) -> httpx.Response:  # type: ignore[no-untyped-def]
    return httpx.post(srv.base_url + "/api/media/sign", json={"ids": ids},
                      headers={"Authorization": f"Bearer {token}"})


async def test_pictures_in_chat(deployment):  # type: ignore[no-untyped-def]
    srv = deployment.server(KEFU_MEDIA_URL_TTL=TTL)
    srv.create_agent("alice")
    agent_token = srv.agent_token("alice")
    token, openid = srv.user_token("pic-user")
    other_token, _ = srv.user_token("pic-other")
    agent = await WsClient.connect(srv.ws_url, agent_token)
    legacy_agent = await WsClient.connect(srv.ws_url, agent_token, v2=False)
    user = await WsClient.connect(srv.ws_url, token)

    # The user uploads a phone photo (with GPS EXIF) and sends it as a message.
    r = upload(srv, token, images.photo_with_gps((1200, 900)))
    assert r.status_code == 201, r.text
    up = r.json()
    image_id = up["image"]["id"]
    assert up["image"]["mime"] == "image/jpeg" and up["image"]["thumb"] == {"width": 320, "height": 240}
    full = httpx.get(srv.base_url + up["url"])
    assert full.status_code == 200 and full.headers["content-type"] == "image/jpeg"
    assert full.headers["x-content-type-options"] == "nosniff"
    assert images.gps_of(full.content) == {} and b"KefuPhone" not in full.content
    assert Image.open(io.BytesIO(httpx.get(srv.base_url + up["thumb_url"]).content)).size == (320, 240)

    await user.send({"type": 2, "image": image_id, "cmid": "pic-1"})
    ack = await user.recv_until(lambda f: f.get("cmd") == "ack")
    assert ack["cmid"] == "pic-1" and ack["delivered"] is True
    got = await agent.recv_until(lambda f: f.get("kind") == "image")
    assert got["msg"] == "[图片]" and got["meta"]["image"]["id"] == image_id and got["id"] == ack["id"]
    legacy = await legacy_agent.recv_until(lambda f: f.get("openid") == openid)
    assert legacy["msg"] == "[图片]"  # what a seed-protocol console shows
    await user.send({"type": 2, "image": image_id, "cmid": "pic-1"})  # a resend: the same message
    dup = await user.recv_until(lambda f: f.get("cmd") == "ack")
    assert dup["dup"] is True and dup["id"] == ack["id"]

    # The agent answers with a picture of their own, uploaded into this conversation.
    r = upload(srv, agent_token, images.png(), "reply.png", openid=openid, ctype="image/png")
    assert r.status_code == 201, r.text
    reply_id = r.json()["image"]["id"]
    await agent.send({"type": 1, "openid": openid, "image": reply_id, "cmid": "pic-a1"})
    seen = await user.recv_until(lambda f: f.get("kind") == "image")
    assert seen["from"] == "agent" and seen["meta"]["image"]["id"] == reply_id

    # History and sync carry the same messages; the user may sign their own pictures.
    h = httpx.get(f"{srv.base_url}/api/conversations/{openid}/messages",
                  headers={"Authorization": f"Bearer {token}"}).json()["messages"]
    assert [m.get("kind") for m in h[:2]] == ["image", "image"]
    await user.send({"cmd": "sync", "after": 0})
    synced = await user.recv_until(lambda f: f.get("cmd") == "sync")
    assert {m["meta"]["image"]["id"] for m in synced["messages"] if m.get("kind") == "image"} == {
        image_id, reply_id}
    mine = sign(srv, token, [image_id, reply_id])
    assert mine.status_code == 200 and set(mine.json()["images"]) == {image_id, reply_id}

    # Another user: may not sign these pictures, nor send them as their own.
    assert sign(srv, other_token, [image_id]).status_code == 403
    other_ws = await WsClient.connect(srv.ws_url, other_token)
    await other_ws.send({"type": 2, "image": image_id, "cmid": "steal"})
    err = await other_ws.recv_until(lambda f: f.get("cmd") == "error")
    assert err["code"] == "forbidden" and err["cmid"] == "steal"
    await other_ws.send({"type": 2, "image": "0" * 32, "cmid": "ghost"})
    assert (await other_ws.recv_until(lambda f: f.get("cmd") == "error"))["code"] == "bad_request"
    # A link for one picture does not open another; a changed expiry breaks the signature.
    path, query = up["thumb_url"].split("?")
    assert httpx.get(srv.base_url + path.replace(image_id, reply_id) + "?" + query).status_code == 403
    e = int(query.split("e=")[1].split("&")[0])
    forged = srv.base_url + path + "?" + query.replace(f"e={e}", f"e={e + 3600}")
    assert httpx.get(forged).json()["error"] == "bad_signature"
    assert httpx.get(srv.base_url + path).status_code == 403  # unsigned

    # What is refused at upload: a document renamed .jpg, a decompression bomb, no token.
    r = upload(srv, token, images.NOT_AN_IMAGE, "invoice.jpg")
    assert r.status_code == 400 and r.json()["error"] == "bad_image", r.text
    r = upload(srv, token, images.bomb(), "huge.png", ctype="image/png")
    assert r.status_code == 413 and r.json()["error"] == "too_large", r.text
    assert httpx.post(srv.base_url + "/api/media", content=images.png()).status_code == 401
    raw = httpx.post(srv.base_url + "/api/media", content=images.png(), headers={
        "Authorization": f"Bearer {token}", "Content-Type": "image/png"})
    assert raw.status_code == 201  # the raw body works too (a browser's fetch of a Blob)
    assert upload(srv, agent_token, images.png()).status_code == 400  # an agent names the conversation

    # After its time the link is refused; signing again gives a fresh one.
    await asyncio.sleep(float(TTL) + 1.5)
    late = httpx.get(srv.base_url + up["url"])
    assert late.status_code == 403 and late.json()["error"] == "link_expired"
    fresh = sign(srv, agent_token, [image_id]).json()["images"][image_id]
    assert httpx.get(srv.base_url + fresh["url"]).status_code == 200
    for ws in (agent, legacy_agent, user, other_ws):
        await ws.close()


async def test_a_picture_uploaded_on_one_node_is_served_by_another(redis_deployment):  # type: ignore[no-untyped-def]
    a = redis_deployment.server()
    b = redis_deployment.server()
    a.create_agent("bob")
    token, openid = a.user_token("two-node-user")
    agent = await WsClient.connect(b.ws_url, b.agent_token("bob"))
    user = await WsClient.connect(a.ws_url, token)
    r = upload(a, token, images.photo_with_gps())
    assert r.status_code == 201, r.text
    image_id = r.json()["image"]["id"]
    await user.send({"type": 2, "image": image_id, "cmid": "x1"})
    got = await agent.recv_until(lambda f: f.get("kind") == "image")
    assert got["meta"]["image"]["id"] == image_id
    # Node B signs (same secret, from the database) and serves (bytes in the database).
    signed = sign(b, b.agent_token("bob"), [image_id]).json()["images"][image_id]
    served = httpx.get(b.base_url + signed["url"])
    assert served.status_code == 200 and images.gps_of(served.content) == {}
    assert httpx.get(b.base_url + r.json()["thumb_url"]).status_code == 200  # A's link works on B
    started = time.monotonic()
    while time.monotonic() - started < 10:  # the writer stores it; B's history has it
        h = httpx.get(f"{b.base_url}/api/conversations/{openid}/messages",
                      headers={"Authorization": f"Bearer {token}"}).json()["messages"]
        if h:
            break
        await asyncio.sleep(0.2)
    assert h[0]["kind"] == "image" and h[0]["meta"]["image"]["id"] == image_id
    # Avatars are bytes in MySQL too (the same binary path): set on A, served by B.
    r = httpx.post(a.base_url + "/api/me/avatar", files={"file": ("a.png", images.png(), "image/png")},
                   headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    assert httpx.get(b.base_url + f"/api/avatars/{openid}").content == images.png()
    await agent.close()
    await user.close()
