"""deploy/nginx/kefu.conf, run by Debian's nginx in front of a real kefu: TLS with a self-signed
certificate on loopback ports, chat over wss://, the push API over https://, and an access log that
records paths but never a query string (tokens travel in /ws?token=…)."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.ops import clean_env
from tests.support.server import ROOT, KefuServer, free_port
from tests.support.wsclient import WsClient

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
pytestmark = pytest.mark.skipif(
    not os.access(NGINX, os.X_OK),
    reason="nginx is not installed; scripts/test installs Debian's nginx with apt-get")
API_KEY = "nginx-test-api-key"


def self_signed(tmp: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 / localhost, its own CA (the client trusts exactly it)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kefu test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    crt, pem = tmp / "kefu.crt", tmp / "kefu.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    return crt, pem


def site_config(kefu_port: int, https_port: int, http_port: int, crt: Path, key: Path,
                access_log: Path) -> str:
    """deploy/nginx/kefu.conf with only its addresses, certificate and log path changed."""
    conf = (ROOT / "deploy" / "nginx" / "kefu.conf").read_text()
    for old, new, times in (
        ("server 127.0.0.1:8000;", f"server 127.0.0.1:{kefu_port};", 1),
        ("listen 443 ssl http2;", f"listen 127.0.0.1:{https_port} ssl http2;", 1),
        ("    listen [::]:443 ssl http2;\n", "", 1),
        ("listen 80;", f"listen 127.0.0.1:{http_port};", 1),
        ("    listen [::]:80;\n", "", 1),
        ("/etc/ssl/kefu/fullchain.pem", str(crt), 1),
        ("/etc/ssl/kefu/privkey.pem", str(key), 1),
        ("/var/log/nginx/kefu.access.log", str(access_log), 2),
    ):
        assert conf.count(old) == times, f"deploy/nginx/kefu.conf changed: {old!r}"
        conf = conf.replace(old, new)
    return conf


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[dict]:
    kefu = KefuServer(clean_env(KEFU_DATA_DIR=str(tmp_path / "data"), KEFU_API_KEY=API_KEY),
                      tmp_path / "kefu.log")
    kefu.start()
    crt, key = self_signed(tmp_path)
    https_port, http_port = free_port(), free_port()
    access_log = tmp_path / "access.log"
    (tmp_path / "kefu.conf").write_text(site_config(kefu.port, https_port, http_port, crt, key, access_log))
    temp = "".join(f"    {d}_temp_path {tmp_path / d};\n" for d in ("client_body", "proxy", "fastcgi",
                                                                         "uwsgi", "scgi"))
    (tmp_path / "nginx.conf").write_text(
        ("user root;\n" if os.geteuid() == 0 else "")
        + f"worker_processes 1;\npid {tmp_path / 'nginx.pid'};\nerror_log {tmp_path / 'error.log'} warn;\n"
        f"events {{ worker_connections 256; }}\nhttp {{\n{temp}    include {tmp_path / 'kefu.conf'};\n}}\n")
    args = [NGINX, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")]
    check = subprocess.run([*args, "-t"], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stderr
    proc = subprocess.Popen([*args, "-g", "daemon off;"], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", https_port), timeout=1).close()
            break
        except OSError:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.05)
    try:
        yield {"kefu": kefu, "https": f"https://127.0.0.1:{https_port}", "wss": f"wss://127.0.0.1:{https_port}/ws",
               "http": f"http://127.0.0.1:{http_port}", "tls": ssl.create_default_context(cafile=str(crt)),
               "access_log": access_log, "proc": proc}
    finally:
        proc.send_signal(signal.SIGQUIT)  # graceful: finishes requests, flushes the log
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        kefu.stop()


async def test_chat_over_wss_and_the_push_api_over_https_through_the_deploy_nginx(nginx):
    kefu, tls = nginx["kefu"], nginx["tls"]
    base = nginx["https"]
    async with httpx.AsyncClient(base_url=base, verify=tls) as http:
        r = await http.post("/api/login", json={"code": "through-nginx"})
        assert r.status_code == 200, r.text
        user_token, openid = r.json()["token"], r.json()["openid"]
        await asyncio.to_thread(kefu.create_agent, "nginx-agent")
        r = await http.post("/api/agent/login", json={"name": "nginx-agent", "password": "correct-horse-1"})
        agent_token = r.json()["token"]
        assert (await http.get("/readyz")).json()["ready"] is True

        agent = await WsClient.connect(nginx["wss"], agent_token, ssl=tls)
        user = await WsClient.connect(nginx["wss"], user_token, ssl=tls)
        await user.send({"msg": "你好, through TLS", "type": 2, "cmid": "n1"})
        assert (await user.recv_until(lambda f: f.get("cmd") == "ack"))["cmid"] == "n1"
        got = await agent.recv_until(lambda f: f.get("msg") == "你好, through TLS")
        assert got["openid"] == openid
        await agent.send({"msg": "在的", "type": 1, "openid": openid})
        assert (await user.recv_until(lambda f: f.get("msg") == "在的"))["from"] == "agent"

        r = await http.post("/api/push", json={"openid": openid, "msg": "your order shipped"},
                            headers={"X-Api-Key": API_KEY})
        assert r.json() == {"delivered": True, "nodes": 1}
        assert (await user.recv_until(lambda f: "msg" in f and f.get("msg") == "your order shipped"))
        assert (await http.get("/metrics")).status_code == 404  # metrics have their own bind
        await user.close()
        await agent.close()

    r = httpx.get(nginx["http"] + "/admin/", follow_redirects=False)
    assert r.status_code == 301 and r.headers["location"].startswith("https://")

    nginx["proc"].send_signal(signal.SIGQUIT)
    nginx["proc"].wait(10)
    log = nginx["access_log"].read_text()
    assert '"GET /ws HTTP/1.1" 101' in log and '"POST /api/push HTTP/' in log
    assert "token=" not in log and "?" not in log
    for secret in (user_token, agent_token, API_KEY):
        assert secret not in log
