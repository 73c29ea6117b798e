"""The test PKI issues certificates the apiserver accepts: chained to the CA, right names and usages."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sdworker_tools.pki import ClusterPKI


def test_issued_certificates(tmp_path: Path) -> None:
    pki = ClusterPKI(tmp_path)
    ca = x509.load_pem_x509_certificate(pki.ca.cert.read_bytes())
    client = pki.issue("admin", common_name="admin", organizations=("system:masters",))
    server = pki.issue("apiserver", common_name="kube-apiserver", server=True)

    c = x509.load_pem_x509_certificate(client.cert.read_bytes())
    c.verify_directly_issued_by(ca)
    assert c.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "admin"
    assert c.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "system:masters"
    usages = c.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.CLIENT_AUTH]

    s = x509.load_pem_x509_certificate(server.cert.read_bytes())
    s.verify_directly_issued_by(ca)
    sans = s.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in sans.get_values_for_type(x509.IPAddress)
    assert "localhost" in sans.get_values_for_type(x509.DNSName)
    assert oct(client.key.stat().st_mode & 0o777) == "0o600"
    assert pki.service_account_key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
