"""Service processes that serve TLS or mutual TLS, for the security tests.

SecureServerProcess is conftest.ServerProcess with its own channels: TLS to the
process's certificate (the test CA), presenting a client certificate when given one,
and optionally a bearer token on every call of `client`.
"""

import json
import time

import grpc
import pytest

import ywclient
from conftest import START_TIMEOUT_S, ServerProcess


def tls_channel(address, ca_pem, cert=None, options=()):
    """A TLS channel to address, trusting ca_pem; cert (a pki.Leaf) is the client
    certificate, or None for none."""
    creds = grpc.ssl_channel_credentials(ca_pem, cert.key_pem if cert else None,
                                         cert.cert_pem if cert else None)
    return grpc.secure_channel(address, creds, options=list(options))


class SecureServerProcess(ServerProcess):
    """A service started with TLS flags; its `channel` speaks TLS as `client_cert`."""

    def __init__(self, binary, data_dir, log_dir, extra_args=(), name="server", ca_pem=None,
                 client_cert=None):
        super().__init__(binary, data_dir, log_dir, extra_args, name=name)
        self.ca_pem = ca_pem
        self.client_cert = client_cert

    def tls_channel(self, cert="default", options=()):
        return tls_channel(self.address, self.ca_pem,
                           self.client_cert if cert == "default" else cert, options)

    def _wait_serving(self):
        deadline = time.monotonic() + START_TIMEOUT_S
        last = None
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                self._close_log()
                pytest.fail("%s exited with %d during start-up; log:\n%s"
                            % (self.name, rc, self.log_tail()), pytrace=False)
            ch = self.tls_channel()
            try:
                if ywclient.health_check(ch, "", timeout=1.0) == "SERVING":
                    return
                last = "health status not SERVING"
            except grpc.RpcError as e:
                last = "%s: %s" % (e.code(), e.details())
            finally:
                ch.close()
            time.sleep(0.05)
        self.kill9()
        pytest.fail("%s not SERVING within %.0f s (last: %s); log:\n%s"
                    % (self.name, START_TIMEOUT_S, last, self.log_tail()), pytrace=False)

    @property
    def channel(self):
        if self._channel is None:
            self._channel = self.tls_channel()
        return self._channel


def write_auth_config(path, callers, methods):
    """Writes an --auth-config file; returns its path."""
    with open(path, "w") as f:
        json.dump({"callers": callers, "methods": methods}, f, indent=2)
    return str(path)
