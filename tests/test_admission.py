"""The counting behind the anonymous-load limits, without sockets: socket caps and their slots,
address keys, the descriptor reserve, and the in-memory `/qrcode` quota on an injected clock.
(The behaviour through real sockets is in test_anonymous_load.py.)"""

from __future__ import annotations

import pytest

from kefu.core.admission import SocketCaps, address_key, cap_for_descriptors
from kefu.errors import RateLimited
from kefu.store.qr_quota import LocalQrQuota, QrQuotaPolicy, wait_for


def test_addresses_count_as_ipv4_or_ipv6_64():
    assert address_key("198.51.100.7") == "198.51.100.7"
    assert address_key("2001:db8:1:2::1") == address_key("2001:db8:1:2:ffff:ffff:ffff:ffff")
    assert address_key("2001:db8:1:2::1") != address_key("2001:db8:1:3::1")
    assert address_key("::ffff:198.51.100.7") == "198.51.100.7"  # a v4 client on a v6 socket
    assert address_key("[2001:db8::1]") == address_key("2001:db8::2")
    assert address_key("not an address" * 10) == ("not an address" * 10)[:64]


def test_caps_refuse_past_each_limit_and_slots_give_back_once():
    caps = SocketCaps(total=4, qr=2, per_address=2)
    a = [caps.admit("10.0.0.1", qr=True), caps.admit("10.0.0.1", qr=False)]
    with pytest.raises(RateLimited, match="from your address"):
        caps.admit("10.0.0.1", qr=False)
    b = caps.admit("10.0.0.2", qr=True)
    with pytest.raises(RateLimited, match="socket limit") as e:
        caps.admit("10.0.0.3", qr=True)  # two QR pages is the QR cap
    assert e.value.retry_after == 5.0
    c = caps.admit("10.0.0.3", qr=False)
    with pytest.raises(RateLimited, match="socket limit"):
        caps.admit("10.0.0.4", qr=False)  # four in all
    a[0].release()
    a[0].release()  # idempotent: the handler's end and the connection's loss both release
    assert (caps.open, caps.open_qr, caps.from_address("10.0.0.1")) == (3, 1, 1)
    for slot in (a[1], b, c):
        slot.release()
    assert (caps.open, caps.open_qr) == (0, 0) and caps._by_key == {}  # no address left behind


def test_the_socket_cap_leaves_descriptors_for_everything_else():
    assert cap_for_descriptors(10_000, 1024) == 768
    assert cap_for_descriptors(10_000, 65536) == 10_000
    assert cap_for_descriptors(10_000, 200) == 72
    assert cap_for_descriptors(10_000, 0) == 10_000  # unknown or unlimited
    assert cap_for_descriptors(10_000, 100) == 1


def test_qr_quota_waits_for_the_oldest_counted_code():
    p = QrQuotaPolicy(per_minute=4, live=3, lifetime=10.0)
    assert wait_for([], 0.0, p) == 0
    assert wait_for([1.0, 2.0, 3.0], 5.0, p) == pytest.approx(6.0)  # live: 1.0 + 10 - 5
    assert wait_for([1.0, 12.0, 13.0, 14.0], 15.0, p) == pytest.approx(61.0 - 15.0)  # per minute


async def test_local_qr_quota_counts_gives_back_and_stays_bounded():
    now = [0.0]
    q = LocalQrQuota(QrQuotaPolicy(per_minute=4, live=3, lifetime=10.0), max_addresses=100,
                     clock=lambda: now[0])
    assert [await q.take("a", f"u{i}") for i in range(3)] == [0, 0, 0]
    assert await q.take("a", "u3") == pytest.approx(10.0)
    await q.give_back("a", "u2")  # never made: does not count
    assert await q.take("a", "u4") == 0
    now[0] = 10.5
    assert await q.take("a", "u5") == 0  # three expired; four this minute
    assert await q.take("a", "u6") == pytest.approx(49.5)
    for i in range(1000):
        await q.take(f"addr{i}", "u")
    assert len(q) == 100  # the least recently seen addresses are forgotten
