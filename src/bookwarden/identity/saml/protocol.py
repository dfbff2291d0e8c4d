"""SAML 2.0 service-provider mechanics over pysaml2: IdP metadata checks, authentication requests,
and the verification of the identity provider's responses. No database here: identity/saml/service.py
keeps the state (requests in flight, used assertions) and decides what a verified assertion means.

What a response must be to sign anyone in (anything else is refused with a `Refusal`):

- A SAML Response with status Success, for this tenant's ACS (Destination), answering the one
  request this browser started (InResponseTo; unsolicited, IdP-initiated responses are refused).
- Exactly one assertion, not encrypted, **itself signed** (a signed Response around an unsigned
  assertion is refused), with an allowed algorithm (RSA or ECDSA with SHA-256 or stronger; SHA-1 and
  MD5 are refused), by a key from the tenant's uploaded metadata and no other: pysaml2 runs with
  `only_use_keys_in_metadata`, so a certificate carried inside the message is never trusted.
- Issued by the tenant's IdP, with an AudienceRestriction naming this tenant's SP entity id, a
  bearer SubjectConfirmation whose Recipient is this ACS, and inside its validity window
  (NotBefore/NotOnOrAfter, with `CLOCK_SKEW` seconds of tolerance).

XML is parsed by pysaml2 through defusedxml (entity declarations refused); the metadata upload
also refuses any DTD outright. Signatures are checked by the `xmlsec1` program.

pysaml2 logs whole messages (NameIDs, attributes) at INFO and error texts that embed the document,
so its logger is silenced: refusals are logged and audited by identity/saml/service.py, by reason only.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import enum
import logging
import shutil
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.utils import CryptographyDeprecationWarning

from bookwarden.core.errors import InvalidInput
from bookwarden.identity.links import public_url_for

with warnings.catch_warnings():
    # pysaml2 still names a cipher mode that cryptography has moved (CFB); nothing here uses it.
    warnings.simplefilter("ignore", CryptographyDeprecationWarning)
    from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT, samlp
    from saml2.attribute_converter import ac_factory
    from saml2.client import Saml2Client
    from saml2.config import SPConfig
    from saml2.mdstore import InMemoryMetaData, TooOld
    from saml2.metadata import entity_descriptor
    from saml2.response import IncorrectlySigned, StatusError, UnsolicitedResponse
    from saml2.sigver import SigverError
    from saml2.time_util import str_to_time
    from saml2.validate import ResponseLifetimeExceed, ToEarly

logging.getLogger("saml2").setLevel(logging.CRITICAL)

SSO_PREFIX = "/api/v1/sso/saml"
CLOCK_SKEW = 60  # seconds the IdP's clock and ours may disagree
MAX_METADATA_CHARS = 512_000  # one IdP's metadata is a few kB; a federation aggregate is refused anyway
MAX_RESPONSE_BYTES = 256 * 1024  # a decoded response; real ones are a few kB
MIN_RSA_BITS = 2048
NAME_ID = "NameID"  # as the username attribute: the assertion's subject NameID

SIGNATURE_ALGORITHMS = frozenset(
    {
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384",
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512",
        "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
        "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384",
        "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512",
    }
)
DIGEST_ALGORITHMS = frozenset(
    {
        "http://www.w3.org/2001/04/xmlenc#sha256",
        "http://www.w3.org/2001/04/xmldsig-more#sha384",
        "http://www.w3.org/2001/04/xmlenc#sha512",
    }
)
# Authentication contexts that say the IdP checked a second factor: the REFEDS MFA profile (what
# research and education federations use), Microsoft Entra's, and SAML 2.0's two-factor classes.
MFA_CONTEXTS = frozenset(
    {
        "https://refeds.org/profile/mfa",
        "http://schemas.microsoft.com/claims/multipleauthn",
        "urn:oasis:names:tc:SAML:2.0:ac:classes:MobileTwoFactorContract",
        "urn:oasis:names:tc:SAML:2.0:ac:classes:MobileTwoFactorUnregistered",
        "urn:oasis:names:tc:SAML:2.0:ac:classes:SmartcardPKI",
    }
)


class Refusal(enum.StrEnum):
    """Why an institutional sign-on was refused: the audit event's reason and the problem's explanation."""

    NOT_STARTED = "no-sign-in-started"
    REQUEST_EXPIRED = "request-expired"
    MALFORMED = "malformed-response"
    IDP_ERROR = "idp-error"
    ENCRYPTED = "encrypted-assertion"
    UNSIGNED = "unsigned-assertion"
    WEAK_ALGORITHM = "weak-signature-algorithm"
    BAD_SIGNATURE = "bad-signature"
    WRONG_ISSUER = "wrong-issuer"
    WRONG_AUDIENCE = "wrong-audience"
    WRONG_DESTINATION = "wrong-destination"
    WRONG_REQUEST = "not-in-response-to-this-request"
    EXPIRED = "expired"
    NOT_YET_VALID = "not-yet-valid"
    REPLAYED = "replayed-assertion"
    INVALID = "invalid-assertion"
    METADATA_EXPIRED = "idp-metadata-expired"
    NO_USERNAME = "no-username"
    UNKNOWN_ACCOUNT = "unknown-account"
    ACCOUNT_DISABLED = "account-disabled"
    ROLE_CONFLICT = "role-conflict"
    SECOND_FACTOR_ENROLMENT_REQUIRED = "second-factor-enrolment-required"
    CONCURRENT_SIGN_IN = "concurrent-sign-in"


EXPLANATION = {
    Refusal.NOT_STARTED: "no sign-in was started in this browser for this answer (or it was answered already); "
    "start again from the sign-in page",
    Refusal.REQUEST_EXPIRED: "the sign-in took longer than 10 minutes; start again from the sign-in page",
    Refusal.MALFORMED: "the identity provider's answer is not a SAML response",
    Refusal.IDP_ERROR: "the identity provider did not sign you in (cancelled, or refused there)",
    Refusal.ENCRYPTED: "the assertion is encrypted, which this service provider does not support: "
    "the identity provider must send signed, unencrypted assertions (the connection is HTTPS)",
    Refusal.UNSIGNED: "the assertion is not signed; signed assertions are required",
    Refusal.WEAK_ALGORITHM: "the assertion is signed with a weak algorithm; SHA-256 or stronger is required",
    Refusal.BAD_SIGNATURE: "the assertion's signature does not verify with the identity provider's certificate "
    "in the uploaded metadata (altered, or signed with another key)",
    Refusal.WRONG_ISSUER: "the assertion was issued by another identity provider than the institution's",
    Refusal.WRONG_AUDIENCE: "the assertion is meant for another service provider",
    Refusal.WRONG_DESTINATION: "the response was sent to another service provider's address",
    Refusal.WRONG_REQUEST: "the response does not answer the sign-in this browser started",
    Refusal.EXPIRED: "the assertion has expired (check the clocks of the identity provider)",
    Refusal.NOT_YET_VALID: "the assertion is not valid yet (check the clocks of the identity provider)",
    Refusal.REPLAYED: "this assertion has been used already",
    Refusal.INVALID: "the assertion does not meet the SAML web sign-on profile",
    Refusal.METADATA_EXPIRED: "the identity provider's metadata has expired; an administrator must upload fresh "
    "metadata",
    Refusal.NO_USERNAME: "the identity provider sent no usable username (one value of the configured attribute, "
    "2-254 characters without spaces)",
    Refusal.UNKNOWN_ACCOUNT: "there is no account for you in this institution, and it does not create accounts on "
    "first sign-in; ask an administrator",
    Refusal.ACCOUNT_DISABLED: "your account in this institution is disabled; ask an administrator",
    Refusal.ROLE_CONFLICT: "the roles your identity provider gives you cannot be held together with a role you "
    "have (segregation of duties); ask an administrator",
    Refusal.SECOND_FACTOR_ENROLMENT_REQUIRED: "your role requires a second factor, the identity provider did not "
    "assert one, and none is enrolled on your account; ask an administrator to enrol one",
    Refusal.CONCURRENT_SIGN_IN: "other sign-ins of yours were being completed at the same moment and this one could "
    "not settle after them; start again from the sign-in page",
}


class ResponseRefused(Exception):
    def __init__(self, reason: Refusal):
        super().__init__(reason.value)
        self.reason = reason


# --- addresses --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpUrls:
    """This tenant's service-provider addresses; the entity id is the metadata's own URL, by convention."""

    entity_id: str
    acs_url: str
    login_url: str

    @property
    def metadata_url(self) -> str:
        return self.entity_id


def sp_urls(tenant_slug: str) -> SpUrls:
    # From BOOKWARDEN_PUBLIC_URL: changing it changes every entity id, so IdPs must be told.
    base = public_url_for(f"{SSO_PREFIX}/{tenant_slug}")
    return SpUrls(entity_id=f"{base}/metadata", acs_url=f"{base}/acs", login_url=f"{base}/login")


# --- identity provider metadata ---------------------------------------------------------------


@dataclass(frozen=True)
class SigningCertificate:
    subject: str
    not_after: datetime
    sha256: str  # fingerprint, colon-separated hex: what administrators compare with their IdP's


@dataclass(frozen=True)
class IdpMetadata:
    entity_id: str
    sso_url: str  # SingleSignOnService, HTTP-Redirect binding
    certificates: tuple[SigningCertificate, ...]


def _refuse_metadata(problem: str) -> InvalidInput:
    return InvalidInput(f"idp_metadata: {problem}")


def parse_idp_metadata(xml: str, *, check_validity: bool = True) -> IdpMetadata:
    """Check uploaded IdP metadata and extract what sign-in needs; raises InvalidInput naming the problem.

    `check_validity=False` reads stored metadata whose validUntil may have passed since its upload
    (to show it to an administrator); sign-in itself always checks it.
    """
    if "<!DOCTYPE" in xml or "<!ENTITY" in xml:
        raise _refuse_metadata("DTDs and entity declarations are refused (SAML metadata never needs them)")
    store = InMemoryMetaData(ac_factory(), xml, check_validity=check_validity)
    try:
        store.load()
    except TooOld:
        raise _refuse_metadata(
            "its validUntil has passed; download fresh metadata from the identity provider"
        ) from None
    except Exception:
        raise _refuse_metadata("not SAML 2.0 metadata: the XML does not parse as an EntityDescriptor") from None
    if store.to_old:
        raise _refuse_metadata("its validUntil has passed; download fresh metadata from the identity provider")
    idps = [entity_id for entity_id, entity in store.items() if entity.get("idpsso_descriptor")]
    if not idps:
        raise _refuse_metadata("it describes no SAML 2.0 identity provider (no IDPSSODescriptor)")
    if len(idps) > 1:
        raise _refuse_metadata(
            f"it describes {len(idps)} identity providers (a federation aggregate?); upload your institution's one"
        )
    entity_id = idps[0]
    if not 1 <= len(entity_id) <= 1024:
        raise _refuse_metadata("the entityID must be 1-1024 characters")
    if any(
        str(d.get("want_authn_requests_signed", "")).lower() in ("true", "1")
        for d in store[entity_id]["idpsso_descriptor"]
    ):
        raise _refuse_metadata(
            "the identity provider wants signed authentication requests (WantAuthnRequestsSigned), which this "
            "service provider does not send; turn that off for this service provider at the identity provider"
        )
    return IdpMetadata(entity_id, _sso_url(store, entity_id), _signing_certificates(store, entity_id))


def _sso_url(store: InMemoryMetaData, entity_id: str) -> str:
    services = store.service(entity_id, "idpsso_descriptor", "single_sign_on_service", BINDING_HTTP_REDIRECT)
    if not services:
        raise _refuse_metadata("it has no SingleSignOnService with the HTTP-Redirect binding")
    location = str(services[0].get("location", ""))
    if urlsplit(location).scheme != "https" or not urlsplit(location).hostname:
        raise _refuse_metadata("the SingleSignOnService location must be an https:// address")
    return location


def _signing_certificates(store: InMemoryMetaData, entity_id: str) -> tuple[SigningCertificate, ...]:
    try:
        found = store.certs(entity_id, "idpsso", "signing")
    except (KeyError, TypeError):
        raise _refuse_metadata("a signing KeyDescriptor carries no X509Certificate") from None
    if not found:
        raise _refuse_metadata(
            'it has no signing certificate (a KeyDescriptor with an X509Certificate, use="signing" or no use): '
            "signed assertions are required and are checked only against certificates from this metadata"
        )
    return tuple(_certificate(text) for _, text in found)


def _certificate(text: str) -> SigningCertificate:
    try:
        cert = x509.load_der_x509_certificate(base64.b64decode("".join(text.split()), validate=True))
        key = cert.public_key()
    except (ValueError, binascii.Error):
        raise _refuse_metadata("a signing certificate is not a valid X.509 certificate") from None
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise _refuse_metadata(f"a signing certificate has a {key.key_size}-bit RSA key; at least 2048 bits")
    elif not isinstance(key, ec.EllipticCurvePublicKey):
        raise _refuse_metadata("a signing certificate's key is neither RSA nor elliptic-curve")
    return SigningCertificate(
        subject=cert.subject.rfc4514_string(),
        not_after=cert.not_valid_after_utc,
        sha256=cert.fingerprint(hashes.SHA256()).hex(":").upper(),
    )


# --- the service provider ---------------------------------------------------------------------


def xmlsec_binary() -> str:
    found = shutil.which("xmlsec1")
    if found is None:
        # An installation fault, not a user's: `make install` installs Debian's xmlsec1.
        raise RuntimeError("the xmlsec1 program is not installed (make install installs it: apt-get install xmlsec1)")
    return found


def _config(sp: SpUrls, idp_metadata: str | None) -> SPConfig:
    settings = {
        "entityid": sp.entity_id,
        "xmlsec_binary": xmlsec_binary(),
        "accepted_time_diff": CLOCK_SKEW,
        # Never the certificate a message carries: only keys from the uploaded metadata verify.
        "only_use_keys_in_metadata": True,
        # Attributes pysaml2 has no name for are kept under their own name, for the mapping to use.
        "allow_unknown_attributes": True,
        "service": {
            "sp": {
                "endpoints": {"assertion_consumer_service": [(sp.acs_url, BINDING_HTTP_POST)]},
                "want_assertions_signed": True,
                "want_response_signed": False,
                "allow_unsolicited": False,
                "authn_requests_signed": False,
            }
        },
    }
    if idp_metadata is not None:
        settings["metadata"] = {"inline": [idp_metadata]}
    config = SPConfig()
    config.load(settings)
    return config


def _client(sp: SpUrls, idp_metadata: str, idp_entity_id: str) -> Saml2Client:
    config = _config(sp, idp_metadata)
    # keys(), not `in`: the store has no __contains__, and `in` would probe it with integers.
    if idp_entity_id not in config.metadata.keys():  # noqa: SIM118
        # Parsed fine at upload; a validUntil passed since drops the entity.
        raise ResponseRefused(Refusal.METADATA_EXPIRED)
    return Saml2Client(config)


def sp_metadata(sp: SpUrls) -> bytes:
    """This tenant's SP metadata, for the IdP's administrator: entity id, ACS, signed assertions wanted."""
    descriptor = entity_descriptor(_config(sp, None))
    # pysaml2 lists every algorithm xmlsec1 knows (MD5 and SHA-1 among them); list only those accepted.
    if descriptor.extensions is not None:
        accepted = SIGNATURE_ALGORITHMS | DIGEST_ALGORITHMS
        kept = [e for e in descriptor.extensions.extension_elements if e.attributes.get("Algorithm") in accepted]
        descriptor.extensions.extension_elements = kept
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + descriptor.to_string()


def authn_request(sp: SpUrls, idp_metadata: str, idp_entity_id: str, relay_state: str) -> tuple[str, str]:
    """An AuthnRequest for the HTTP-Redirect binding: (its id, the IdP address to send the browser to)."""
    client = _client(sp, idp_metadata, idp_entity_id)
    request_id, info = client.prepare_for_authenticate(
        entityid=idp_entity_id, relay_state=relay_state, binding=BINDING_HTTP_REDIRECT
    )
    return request_id, dict(info["headers"])["Location"]


# --- the identity provider's response ---------------------------------------------------------


@dataclass(frozen=True)
class VerifiedAssertion:
    assertion_id: str
    expires_at: datetime  # latest NotOnOrAfter plus the clock skew: until then a replay must be refused
    name_id: str | None
    attributes: dict[str, list[str]]  # by pysaml2's friendly name, by Name and by FriendlyName as sent
    authn_contexts: tuple[str, ...]

    @property
    def second_factor_asserted(self) -> bool:
        return bool(MFA_CONTEXTS.intersection(self.authn_contexts))


def verify_response(
    sp: SpUrls, idp_metadata: str, idp_entity_id: str, saml_response: str, request_id: str
) -> VerifiedAssertion:
    """Verify an HTTP-POST SAMLResponse answering `request_id`; raises ResponseRefused with the reason."""
    _inspect(_decode(saml_response), sp)
    client = _client(sp, idp_metadata, idp_entity_id)
    try:
        result = client.parse_authn_request_response(
            saml_response,
            BINDING_HTTP_POST,
            outstanding={request_id: request_id},
            # Makes pysaml2 check the SubjectConfirmation's Recipient (it skips that without it).
            conv_info={"entity_id": sp.entity_id},
        )
    except Exception as exc:
        raise ResponseRefused(_classify(exc)) from None
    if result is None or result.assertion is None:
        raise ResponseRefused(Refusal.INVALID)
    return _verified(result, sp, idp_entity_id, request_id)


def _decode(saml_response: str) -> bytes:
    try:
        xml = base64.b64decode(saml_response, validate=True)
    except (ValueError, binascii.Error):
        raise ResponseRefused(Refusal.MALFORMED) from None
    if not xml or len(xml) > MAX_RESPONSE_BYTES:
        raise ResponseRefused(Refusal.MALFORMED)
    return xml


def _inspect(xml: bytes, sp: SpUrls) -> None:
    """Refusals that can be told before any signature is checked (never used to accept anything)."""
    try:
        response = samlp.response_from_string(xml)  # through defusedxml
    except Exception:
        raise ResponseRefused(Refusal.MALFORMED) from None
    if response is None:
        raise ResponseRefused(Refusal.MALFORMED)
    code = response.status.status_code.value if response.status and response.status.status_code else None
    if code != samlp.STATUS_SUCCESS:
        raise ResponseRefused(Refusal.IDP_ERROR)
    if response.destination and response.destination != sp.acs_url:
        raise ResponseRefused(Refusal.WRONG_DESTINATION)
    if response.encrypted_assertion:
        raise ResponseRefused(Refusal.ENCRYPTED)
    if len(response.assertion) != 1:
        raise ResponseRefused(Refusal.INVALID)
    assertion = response.assertion[0]
    if assertion.signature is None:
        raise ResponseRefused(Refusal.UNSIGNED)
    for signature in (assertion.signature, response.signature):
        if signature is not None and not _strong(signature):
            raise ResponseRefused(Refusal.WEAK_ALGORITHM)


def _strong(signature) -> bool:
    info = signature.signed_info
    if info is None or info.signature_method is None or info.signature_method.algorithm not in SIGNATURE_ALGORITHMS:
        return False
    return all(
        ref.digest_method is not None and ref.digest_method.algorithm in DIGEST_ALGORITHMS for ref in info.reference
    )


def _classify(exc: Exception) -> Refusal:
    if isinstance(exc, ResponseLifetimeExceed):
        return Refusal.EXPIRED
    if isinstance(exc, ToEarly):
        return Refusal.NOT_YET_VALID
    if isinstance(exc, UnsolicitedResponse):
        return Refusal.WRONG_REQUEST
    if isinstance(exc, StatusError):
        return Refusal.IDP_ERROR
    if isinstance(exc, SigverError | IncorrectlySigned):
        return Refusal.BAD_SIGNATURE
    # pysaml2 raises bare exceptions for these two; their text is the only way to tell them apart.
    if "AudienceRestrictions" in str(exc):
        return Refusal.WRONG_AUDIENCE
    if "don't recall" in str(exc):
        return Refusal.WRONG_REQUEST
    return Refusal.INVALID


def _verified(result, sp: SpUrls, idp_entity_id: str, request_id: str) -> VerifiedAssertion:
    # pysaml2 checked these already; checked again here because sign-in depends on each of them.
    assertion = result.assertion
    issuers = {_text(assertion.issuer), _text(result.response.issuer) or _text(assertion.issuer)}
    if issuers != {idp_entity_id}:
        raise ResponseRefused(Refusal.WRONG_ISSUER)
    if result.in_response_to != request_id:
        raise ResponseRefused(Refusal.WRONG_REQUEST)
    conditions = assertion.conditions
    audiences = {_text(a) for r in (conditions.audience_restriction if conditions else []) for a in r.audience}
    if sp.entity_id not in audiences:  # an assertion without an AudienceRestriction is refused too
        raise ResponseRefused(Refusal.WRONG_AUDIENCE)
    if not assertion.id or len(assertion.id) > 256:  # the replay guard keeps ids of up to 256 characters
        raise ResponseRefused(Refusal.INVALID)
    return VerifiedAssertion(
        assertion_id=assertion.id,
        expires_at=_expiry(assertion),
        name_id=_text(result.name_id) or None,
        attributes=_attributes(result),
        authn_contexts=tuple(context for context, _, _ in result.authn_info() if context),
    )


def _text(element) -> str:
    return (getattr(element, "text", None) or "").strip()


def _expiry(assertion) -> datetime:
    limits = [assertion.conditions.not_on_or_after] if assertion.conditions else []
    for confirmation in assertion.subject.subject_confirmation:
        if confirmation.subject_confirmation_data is not None:
            limits.append(confirmation.subject_confirmation_data.not_on_or_after)
    times = [calendar.timegm(str_to_time(limit)) for limit in limits if limit]
    if not times:  # the web sign-on profile requires one; without it a replay guard could never end
        raise ResponseRefused(Refusal.INVALID)
    return datetime.fromtimestamp(max(times) + CLOCK_SKEW, UTC)


def _attributes(result) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for name, items in (result.ava or {}).items():
        values[name] = [str(item).strip() for item in items if item is not None]
    for statement in result.assertion.attribute_statement:
        for attribute in statement.attribute:
            texts = [_text(v) for v in attribute.attribute_value if _text(v)]
            for name in {attribute.name, attribute.friendly_name} - {None, ""}:
                values.setdefault(name, texts)
    return values
