"""Safe-mode ("encrypted") callback messages (wechat.md §4).

AES-256-CBC with IV = key[:16] and PKCS#7 padding to 32 bytes; plaintext is 16 random bytes, a 4-byte
big-endian length, the message, then the appid. Integrity comes from `msg_signature`, which is
checked before decrypting.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import struct
import time

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from kefu.wechat.callback import cdata, parse_xml_root, sha1_signature
from kefu.wechat.errors import CallbackError, InvalidSignatureError

BLOCK = 32  # WeChat pads to 32 bytes, not AES's 16


class WeChatCrypto:
    """Decrypts pushes and encrypts passive replies for one Official Account."""

    def __init__(self, token: str, encoding_aes_key: str, appid: str) -> None:
        if len(encoding_aes_key) != 43:
            raise ValueError("EncodingAESKey must be 43 characters")
        try:
            key = base64.b64decode(encoding_aes_key + "=", validate=True)
        except binascii.Error:
            raise ValueError("EncodingAESKey is not base64") from None
        if len(key) != 32:
            raise ValueError("EncodingAESKey must decode to 32 bytes")
        self._token = token
        self._key = key
        self._appid = appid.encode()

    def __repr__(self) -> str:
        return f"WeChatCrypto(appid={self._appid.decode()!r})"

    def signature(self, timestamp: str, nonce: str, encrypted: str) -> str:
        return sha1_signature(self._token, str(timestamp), str(nonce), encrypted)

    def encrypt(self, message: bytes, random16: bytes | None = None) -> str:
        """base64 ciphertext of `message` (`random16` only for reproducible tests)."""
        prefix = os.urandom(16) if random16 is None else random16
        if len(prefix) != 16:
            raise ValueError("random16 must be 16 bytes")
        plain = prefix + struct.pack(">I", len(message)) + message + self._appid
        pad = BLOCK - len(plain) % BLOCK
        plain += bytes([pad]) * pad
        enc = self._cipher().encryptor()
        return base64.b64encode(enc.update(plain) + enc.finalize()).decode()

    def decrypt(self, encrypted: str) -> bytes:
        """The message inside `encrypted`; raises `CallbackError` if it is garbled or meant for
        another appid."""
        try:
            data = base64.b64decode(encrypted, validate=True)
        except (binascii.Error, ValueError):
            raise CallbackError("Encrypt is not base64") from None
        if not data or len(data) % 16:
            raise CallbackError("ciphertext length is not a multiple of the AES block")
        dec = self._cipher().decryptor()
        plain = dec.update(data) + dec.finalize()
        pad = plain[-1]
        if not 1 <= pad <= BLOCK or pad > len(plain):
            raise CallbackError("bad padding")
        plain = plain[:-pad]
        if len(plain) < 20:
            raise CallbackError("plaintext too short")
        (size,) = struct.unpack(">I", plain[16:20])
        message, appid = plain[20:20 + size], plain[20 + size:]
        if len(message) != size:
            raise CallbackError("bad message length")
        if not hmac.compare_digest(appid, self._appid):
            raise CallbackError("message is for another appid")
        return message

    def decrypt_message(self, xml: bytes | str, msg_signature: str | None, timestamp: str | None,
                        nonce: str | None) -> bytes:
        """Verify and decrypt a safe-mode POST body; returns the inner plaintext XML."""
        root = parse_xml_root(xml)
        encrypted = (root.findtext("Encrypt") or "").strip()
        if not encrypted:
            raise CallbackError("encrypted callback lacks <Encrypt>")
        if not (msg_signature and timestamp is not None and nonce is not None):
            raise InvalidSignatureError("msg_signature, timestamp and nonce are required")
        expected = self.signature(timestamp, nonce, encrypted)
        if not hmac.compare_digest(expected.encode(), msg_signature.encode()):
            raise InvalidSignatureError("msg_signature mismatch")
        return self.decrypt(encrypted)

    def encrypt_message(self, reply_xml: bytes | str, nonce: str,
                        timestamp: str | int | None = None) -> str:
        """Wrap a passive reply for safe mode: `<xml><Encrypt/><MsgSignature/><TimeStamp/><Nonce/>`."""
        raw = reply_xml.encode() if isinstance(reply_xml, str) else reply_xml
        ts = str(int(time.time()) if timestamp is None else timestamp)
        encrypted = self.encrypt(raw)
        sig = self.signature(ts, nonce, encrypted)
        return (f"<xml><Encrypt>{cdata(encrypted)}</Encrypt>"
                f"<MsgSignature>{cdata(sig)}</MsgSignature>"
                f"<TimeStamp>{ts}</TimeStamp><Nonce>{cdata(nonce)}</Nonce></xml>")

    def _cipher(self) -> Cipher[modes.CBC]:
        return Cipher(algorithms.AES(self._key), modes.CBC(self._key[:16]))
