"""A throw-away PKI for the security tests, made at test time with the openssl CLI.

    pki = Pki(tmp_dir)             # a CA: pki.ca_cert
    c = pki.leaf("admin")          # key and certificate signed by the CA, with
                                   #   URI SAN spiffe://yaowei.test/admin,
                                   #   DNS SAN localhost, IP SAN 127.0.0.1
    c.cert, c.key                  # file paths; c.cert_pem, c.key_pem bytes
    rogue = Pki(other_dir, "rogue")  # another CA, for "wrong client certificate"

Every leaf can be a server and a client certificate (extendedKeyUsage serverAuth,
clientAuth). EC P-256 keys: quick to make. Valid for two days.
"""

import os
import subprocess

SPIFFE_DOMAIN = "spiffe://yaowei.test/"
OPENSSL = os.environ.get("YW_OPENSSL", "openssl")


def _run(args, cwd):
    res = subprocess.run([OPENSSL] + args, cwd=cwd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError("openssl %s failed: %s" % (" ".join(args), res.stderr.strip()))


class Leaf:
    def __init__(self, name, cert, key, san_uri):
        self.name = name
        self.cert = cert
        self.key = key
        self.san_uri = san_uri

    @property
    def cert_pem(self):
        with open(self.cert, "rb") as f:
            return f.read()

    @property
    def key_pem(self):
        with open(self.key, "rb") as f:
            return f.read()


class Pki:
    def __init__(self, directory, name="yaowei-test-ca"):
        self.dir = str(directory)
        os.makedirs(self.dir, exist_ok=True)
        self.name = name
        self.ca_key = os.path.join(self.dir, name + ".key")
        self.ca_cert = os.path.join(self.dir, name + ".crt")
        _run(["req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
              "-nodes", "-keyout", self.ca_key, "-out", self.ca_cert, "-days", "2",
              "-subj", "/CN=" + name,
              "-addext", "basicConstraints=critical,CA:TRUE",
              "-addext", "keyUsage=critical,keyCertSign,cRLSign"], self.dir)
        self._serial = 1

    @property
    def ca_pem(self):
        with open(self.ca_cert, "rb") as f:
            return f.read()

    def leaf(self, name, uri=None, dns=("localhost",), ips=("127.0.0.1",)):
        """A key and certificate for `name`; SANs: the URI (default the SPIFFE id
        spiffe://yaowei.test/<name>), DNS names and IP addresses."""
        prefix = os.path.join(self.dir, "%s-%s" % (self.name, name))
        key, csr, cert, ext = prefix + ".key", prefix + ".csr", prefix + ".crt", prefix + ".ext"
        uri = uri if uri is not None else SPIFFE_DOMAIN + name
        sans = ["URI:" + uri] if uri else []
        sans += ["DNS:" + d for d in dns] + ["IP:" + i for i in ips]
        with open(ext, "w") as f:
            f.write("basicConstraints=CA:FALSE\n"
                    "keyUsage=critical,digitalSignature,keyEncipherment\n"
                    "extendedKeyUsage=serverAuth,clientAuth\n"
                    "subjectAltName=%s\n" % ",".join(sans))
        _run(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
              "-keyout", key, "-out", csr, "-subj", "/CN=" + name], self.dir)
        self._serial += 1
        _run(["x509", "-req", "-in", csr, "-CA", self.ca_cert, "-CAkey", self.ca_key,
              "-set_serial", str(self._serial), "-out", cert, "-days", "2", "-extfile", ext],
             self.dir)
        return Leaf(name, cert, key, uri)
