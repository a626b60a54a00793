"""Security over real loopback sockets: what an https:// proxy is trusted with."""
import ssl

import pytest
import trustme

import fakegpt
from fakegpt.emulator import Emulator

from ..netkit import ForwardProxy

MESSAGES = [{"role": "user", "content": "hi"}]
TOKEN = "tok-0123456789abcdefghij"


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


def server_context(ca):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    return context


@pytest.fixture
def emulator():
    with Emulator() as emulator:
        yield emulator


def test_an_untrusted_https_proxy_is_refused_for_an_http_server(ca, emulator, monkeypatch):
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    with ForwardProxy(server_context(ca)) as proxy:
        with fakegpt.Client(emulator.url, proxy=f"https://alice:proxy-pw-123456@localhost:{proxy.port}",
                            access_token=TOKEN, max_retries=0) as client:
            with pytest.raises(fakegpt.APIConnectionError, match="the proxy's TLS certificate could not be verified"):
                client.complete(MESSAGES)
        assert proxy.accepted == 1
        assert proxy.heads == []  # no request (no bearer token, no Proxy-Authorization) reached it
    assert emulator.counts["conversations"] == 0


def test_a_trusted_https_proxy_carries_an_http_server(ca, emulator, tmp_path, monkeypatch):
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    with ForwardProxy(server_context(ca)) as proxy:
        with fakegpt.Client(emulator.url, proxy=proxy.url, max_retries=0) as client:
            assert client.complete(MESSAGES).startswith('Hello! You said "hi".')
        assert any(head.startswith(b"POST http://") and b"/api/conversation " in head for head in proxy.heads)
