"""Safe-mode AES (`kefu.wechat.crypto`) against the wechat.md §4 vector and by round trip."""

from __future__ import annotations

import base64
import struct

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from defusedxml.ElementTree import fromstring

from kefu.wechat import CallbackError, InvalidSignatureError, WeChatCrypto

# wechatpy tests/test_crypto.py (recomputed in wechat.md)
TOKEN = "123456"
KEY = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR"
APPID = "wx49f0ab532d5d035a"
ENCRYPTED = ("4ByGGj+sVCYcvGeQYhaKIk1o0pQRNbRjxybjTGblXrBaXlTXeOo1+bXFXDQQb1o6co6Yh9Bv41n7hOchLF6p+Q==")
TS, NONCE = "1411443780", "437374425"
MSG_SIGNATURE = "dd6b9c95b495b3f7e2901bfbc76c664930ffdb96"


@pytest.fixture
def crypto() -> WeChatCrypto:
    return WeChatCrypto(TOKEN, KEY, APPID)


def envelope(encrypted: str) -> bytes:
    return (f"<xml><ToUserName><![CDATA[gh_x]]></ToUserName>"
            f"<Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>").encode()


def test_vector_signature_and_plaintext(crypto: WeChatCrypto) -> None:
    assert crypto.signature(TS, NONCE, ENCRYPTED) == MSG_SIGNATURE
    assert crypto.decrypt(ENCRYPTED) == b"5927782489442352469"
    assert crypto.decrypt_message(envelope(ENCRYPTED), MSG_SIGNATURE, TS, NONCE) == (
        b"5927782489442352469")


def test_vector_layout_matches_spec() -> None:
    key = base64.b64decode(KEY + "=")
    dec = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
    plain = dec.update(base64.b64decode(ENCRYPTED)) + dec.finalize()
    assert len(plain) % 32 == 0
    pad = plain[-1]
    assert plain[-pad:] == bytes([pad]) * pad
    (size,) = struct.unpack(">I", plain[16:20])
    assert plain[20:20 + size] == b"5927782489442352469"
    assert plain[20 + size:-pad] == APPID.encode()


def test_wrong_or_missing_signature_rejected(crypto: WeChatCrypto) -> None:
    with pytest.raises(InvalidSignatureError):
        crypto.decrypt_message(envelope(ENCRYPTED), "0" * 40, TS, NONCE)
    with pytest.raises(InvalidSignatureError):
        crypto.decrypt_message(envelope(ENCRYPTED), MSG_SIGNATURE, TS, "1")
    with pytest.raises(InvalidSignatureError):
        crypto.decrypt_message(envelope(ENCRYPTED), None, TS, NONCE)
    assert issubclass(InvalidSignatureError, CallbackError)


def test_other_appid_rejected() -> None:
    other = WeChatCrypto(TOKEN, KEY, "wx0000000000000000")
    with pytest.raises(CallbackError, match="appid"):
        other.decrypt(ENCRYPTED)


@pytest.mark.parametrize("size", [0, 1, 11, 12, 13, 43, 44, 45, 100, 1000])
def test_round_trip_every_padding(crypto: WeChatCrypto, size: int) -> None:
    msg = ("é" * size).encode()[:size]
    encrypted = crypto.encrypt(msg)
    assert len(base64.b64decode(encrypted)) % 32 == 0
    assert crypto.decrypt(encrypted) == msg


def test_encrypt_is_randomised_unless_seeded(crypto: WeChatCrypto) -> None:
    assert crypto.encrypt(b"x") != crypto.encrypt(b"x")
    assert crypto.encrypt(b"x", random16=b"0" * 16) == crypto.encrypt(b"x", random16=b"0" * 16)


def test_encrypt_message_reply_round_trip(crypto: WeChatCrypto) -> None:
    reply = ("<xml><ToUserName><![CDATA[o_user]]></ToUserName><FromUserName><![CDATA[gh_x]]>"
             "</FromUserName><CreateTime>1</CreateTime><MsgType><![CDATA[text]]></MsgType>"
             "<Content><![CDATA[你好]]></Content></xml>")
    out = crypto.encrypt_message(reply, nonce="98765", timestamp=1714036504)
    root = fromstring(out)
    assert [child.tag for child in root] == ["Encrypt", "MsgSignature", "TimeStamp", "Nonce"]
    assert root.findtext("TimeStamp") == "1714036504" and root.findtext("Nonce") == "98765"
    assert root.findtext("MsgSignature") == crypto.signature(
        "1714036504", "98765", root.findtext("Encrypt"))
    assert crypto.decrypt_message(out, root.findtext("MsgSignature"), "1714036504",
                                  "98765") == reply.encode()


def test_tampered_ciphertext_rejected(crypto: WeChatCrypto) -> None:
    raw = bytearray(base64.b64decode(crypto.encrypt(b"<xml>hello</xml>")))
    raw[-17] ^= 0x01  # flips the padding byte of the last block (CBC malleability)
    with pytest.raises(CallbackError):
        crypto.decrypt(base64.b64encode(bytes(raw)).decode())


@pytest.mark.parametrize("bad", ["%%%notbase64", "", base64.b64encode(b"short").decode(),
                                 base64.b64encode(b"x" * 20).decode()])
def test_garbage_ciphertext_rejected(crypto: WeChatCrypto, bad: str) -> None:
    with pytest.raises(CallbackError):
        crypto.decrypt(bad)


def test_missing_encrypt_element_and_bad_xml(crypto: WeChatCrypto) -> None:
    with pytest.raises(CallbackError):
        crypto.decrypt_message(b"<xml><ToUserName>a</ToUserName></xml>", MSG_SIGNATURE, TS, NONCE)
    with pytest.raises(CallbackError):
        crypto.decrypt_message(b"<xml><Encrypt>", MSG_SIGNATURE, TS, NONCE)


@pytest.mark.parametrize("key", ["short", KEY + "A", "!" * 43])
def test_bad_encoding_aes_key(key: str) -> None:
    with pytest.raises(ValueError):
        WeChatCrypto(TOKEN, key, APPID)
