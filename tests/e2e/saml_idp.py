"""A SAML identity provider for tests: pysaml2's own IdP (saml2.server.Server) with a key and a
self-signed certificate made by `cryptography`, written to files as pysaml2 wants them. No network.
"""

from __future__ import annotations

import base64
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from saml2 import BINDING_HTTP_REDIRECT
from saml2.authn_context import PASSWORD
from saml2.config import IdPConfig
from saml2.metadata import create_metadata_string
from saml2.saml import NAME_FORMAT_URI, NAMEID_FORMAT_PERSISTENT
from saml2.server import Server

from bookwarden.identity.saml import protocol as saml_protocol

IDP = "https://idp.alpha.example/idp"
IDP_SSO = "https://idp.alpha.example/sso/redirect"
SHA256 = ("http://www.w3.org/2001/04/xmldsig-more#rsa-sha256", "http://www.w3.org/2001/04/xmlenc#sha256")
STAFF = {"eduPersonPrincipalName": ["jdoe@alpha.example"], "eduPersonAffiliation": ["staff", "member"]}


def key_pair(folder: Path, name: str) -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    key_file, cert_file = folder / f"{name}.key", folder / f"{name}.crt"
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return str(key_file), str(cert_file)


@dataclass
class Answer:
    saml_response: str
    relay_state: str
    request_id: str

    def xml(self) -> str:
        return base64.b64decode(self.saml_response).decode()

    def with_xml(self, xml: str) -> Answer:
        return Answer(base64.b64encode(xml.encode()).decode(), self.relay_state, self.request_id)


class IdentityProvider:
    """A SAML IdP as an institution runs one: pysaml2's Server, its own key, our SP metadata loaded."""

    def __init__(self, key_pair: tuple[str, str], sp_metadata: list[str]):
        key_file, cert_file = key_pair
        config = IdPConfig()
        config.load(
            {
                "entityid": IDP,
                "key_file": key_file,
                "cert_file": cert_file,
                "xmlsec_binary": saml_protocol.xmlsec_binary(),
                "metadata": {"inline": sp_metadata},
                "service": {
                    "idp": {
                        "endpoints": {"single_sign_on_service": [(IDP_SSO, BINDING_HTTP_REDIRECT)]},
                        "name_id_format": [NAMEID_FORMAT_PERSISTENT],
                        "policy": {
                            "default": {
                                "lifetime": {"minutes": 5},
                                "attribute_restrictions": None,
                                "name_form": NAME_FORMAT_URI,
                            }
                        },
                    }
                },
            }
        )
        self.config = config
        self.server = Server(config=config)

    def metadata(self) -> str:
        return create_metadata_string(None, config=self.config).decode()

    def answer(
        self,
        redirect_url: str,
        identity: dict | None = None,
        *,
        authn_class: str = PASSWORD,
        sign_assertion: bool = True,
        sign_response: bool = False,
        algorithms: tuple[str, str] = SHA256,
        audience: str | None = None,
    ) -> Answer:
        """What the IdP's page posts back after the person signed in there."""
        assert redirect_url.startswith(IDP_SSO + "?")
        query = parse_qs(urlsplit(redirect_url).query)
        request = self.server.parse_authn_request(query["SAMLRequest"][0], BINDING_HTTP_REDIRECT)
        args = self.server.response_args(request.message)
        if audience is not None:
            args["sp_entity_id"] = audience
        response = self.server.create_authn_response(
            identity or STAFF,
            userid="jdoe",
            authn={"class_ref": authn_class, "authn_auth": IDP},
            sign_assertion=sign_assertion,
            sign_response=sign_response,
            sign_alg=algorithms[0],
            digest_alg=algorithms[1],
            in_response_to=args["in_response_to"],
            destination=args["destination"],
            sp_entity_id=args["sp_entity_id"],
        )
        return Answer(base64.b64encode(str(response).encode()).decode(), query["RelayState"][0], request.message.id)


@lru_cache(maxsize=1)
def sample_metadata() -> str:
    """Valid metadata of an IdP (its certificate, no private key needed by whoever reads it)."""
    return IdentityProvider(key_pair(Path(tempfile.mkdtemp(prefix="idp-")), "sample"), []).metadata()
