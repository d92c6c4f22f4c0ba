"""Server-side SigV4 verification with botocore, as AWS does it: recompute the signature from what
was received and the secret of the access key named in the Authorization header, and compare.

botocore's SigV4Auth computes the canonical request, the string to sign and the signing key; this
module only feeds it what arrived on the wire:
- the headers the client listed in SignedHeaders (not botocore's own choice of headers), with
  their values exactly as received;
- the query as sent, percent-decoded per RFC 3986 and handed to botocore as parameters so that it
  re-encodes them canonically. A '+' is a literal plus sign, not a space, unless the verifier is
  told otherwise: a client that sends '+' but signs '%20' has signed a different query than the one
  it sent, and that is reported;
- the body bytes (hashed here; an X-Amz-Content-Sha256 header must match them);
- the time in X-Amz-Date, which must be within the allowed skew of the server's clock.
"""

import dataclasses
import datetime
import hashlib
import re
from email.message import Message

from botocore.auth import SigV4Auth
from botocore.credentials import Credentials

ALGORITHM = "AWS4-HMAC-SHA256"
AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
_PERCENT_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
INVALID_TOKEN = "The security token included in the request is invalid"
_AUTH_PART = re.compile(r"\s*([A-Za-z]+)=([^,]*)\s*(?:,|$)")


@dataclasses.dataclass
class Key:
    access_key: str
    secret_key: str
    session_token: str = ""


@dataclasses.dataclass
class Verdict:
    ok: bool
    # AWS's error code for the failure: MissingAuthenticationTokenException,
    # IncompleteSignatureException, UnrecognizedClientException or InvalidSignatureException.
    error_type: str = ""
    reason: str = ""
    access_key: str = ""
    signed_headers: list = dataclasses.field(default_factory=list)
    received_authorization: str = ""
    expected_authorization: str = ""
    canonical_request: str = ""
    string_to_sign: str = ""

    def to_json(self):
        return dataclasses.asdict(self)


class _Headers(Message):
    """Case-insensitive multi-valued headers with get_all, as botocore's HTTPHeaders."""


class _ReceivedRequest:
    """The attributes of a botocore AWSRequest that SigV4Auth.canonical_request reads."""

    def __init__(self, method, url, headers, params, body, timestamp):
        self.method = method
        self.url = url
        self.headers = headers
        self.params = params
        self.body = body
        self.context = {"timestamp": timestamp}


class _Recompute(SigV4Auth):
    """SigV4Auth over the client's own SignedHeaders list and the exact body received."""

    def __init__(self, credentials, service, region, signed_header_names):
        super().__init__(credentials, service, region)
        self._names = signed_header_names

    def headers_to_sign(self, request):
        chosen = _Headers()
        for name in self._names:
            for value in request.headers.get_all(name) or []:
                chosen[name] = value
        return chosen

    def canonical_query_string(self, request):
        # Always from the decoded parameters, even when there are none.
        return self._canonical_query_string_params(request.params)

    def payload(self, request):
        return hashlib.sha256(request.body).hexdigest()


def decode_query(raw_query, plus_is_space=False):
    """[(key, value)] of a raw query string, percent-decoded; raises ValueError on a bad escape."""
    from urllib.parse import unquote_to_bytes

    pairs = []
    if not raw_query:
        return pairs
    for part in raw_query.split("&"):
        if part == "":
            continue
        key, _, value = part.partition("=")
        decoded = []
        for text in (key, value):
            if _PERCENT_ESCAPE.search(text):
                raise ValueError(f"malformed percent-escape in query part {part!r}")
            if plus_is_space:
                text = text.replace("+", " ")
            decoded.append(unquote_to_bytes(text).decode("utf-8"))
        pairs.append((decoded[0], decoded[1]))
    return pairs


def parse_authorization(value):
    """(credential, signed_headers, signature) of an Authorization header; ValueError if not
    AWS4-HMAC-SHA256 with exactly those three components."""
    if not value.startswith(ALGORITHM + " "):
        raise ValueError(f"Authorization does not start with '{ALGORITHM} '")
    rest = value[len(ALGORITHM) + 1 :]
    parts = {}
    pos = 0
    while pos < len(rest):
        m = _AUTH_PART.match(rest, pos)
        if not m or m.end() == pos:
            raise ValueError(f"Authorization component not understood at {rest[pos:]!r}")
        if m.group(1) in parts:
            raise ValueError(f"Authorization repeats {m.group(1)}")
        parts[m.group(1)] = m.group(2)
        pos = m.end()
    missing = [k for k in ("Credential", "SignedHeaders", "Signature") if k not in parts]
    extra = [k for k in parts if k not in ("Credential", "SignedHeaders", "Signature")]
    if missing or extra:
        raise ValueError(
            f"Authorization needs Credential, SignedHeaders and Signature"
            f" (missing {missing}, unexpected {extra})"
        )
    return parts["Credential"], parts["SignedHeaders"], parts["Signature"]


class Verifier:
    """Verifies requests signed for `service` in `region` by one of `keys` (access key -> Key)."""

    def __init__(self, region, service, keys, max_skew_seconds=900, plus_is_space=False):
        self.region = region
        self.service = service
        self.keys = {k.access_key: k for k in keys}
        self.max_skew = datetime.timedelta(seconds=max_skew_seconds)
        self.plus_is_space = plus_is_space

    def verify(self, method, path, raw_query, headers, body, now=None):
        """Checks one request. `path` is the raw request path, `raw_query` the query exactly as
        sent (no '?'), `headers` a list of (name, value) as received, `body` bytes."""
        received = _Headers()
        for name, value in headers:
            received[name.lower()] = value
        auths = received.get_all("authorization") or []
        if not auths:
            return Verdict(
                False, "MissingAuthenticationTokenException", "Missing Authentication Token"
            )
        verdict = Verdict(False, received_authorization=auths[0])
        if len(auths) > 1:
            return self._fail(
                verdict, "IncompleteSignatureException", "more than one Authorization header"
            )
        try:
            credential, signed, signature = parse_authorization(auths[0])
        except ValueError as e:
            return self._fail(verdict, "IncompleteSignatureException", str(e))

        scope = credential.split("/")
        if len(scope) != 5 or scope[4] != "aws4_request":
            return self._fail(
                verdict,
                "IncompleteSignatureException",
                f"Credential {credential!r} is not <key>/<date>/<region>/<service>/aws4_request",
            )
        access_key, scope_date, region, service, _ = scope
        verdict.access_key = access_key
        key = self.keys.get(access_key)
        if key is None:
            return self._fail(
                verdict,
                "UnrecognizedClientException",
                f"{INVALID_TOKEN} (unknown access key {access_key!r})",
            )
        if region != self.region:
            return self._fail(
                verdict,
                "InvalidSignatureException",
                f"Credential should be scoped to a valid region, not {region!r}"
                f" (expected {self.region!r})",
            )
        if service != self.service:
            return self._fail(
                verdict,
                "InvalidSignatureException",
                f"Credential should be scoped to correct service: {self.service!r},"
                f" not {service!r}",
            )

        dates = received.get_all("x-amz-date") or []
        if len(dates) != 1:
            return self._fail(
                verdict,
                "IncompleteSignatureException",
                f"expected one X-Amz-Date header, got {len(dates)}",
            )
        amz_date = dates[0]
        try:
            signed_at = datetime.datetime.strptime(amz_date, AMZ_DATE_FORMAT).replace(
                tzinfo=datetime.timezone.utc
            )
        except ValueError:
            return self._fail(
                verdict,
                "IncompleteSignatureException",
                f"X-Amz-Date {amz_date!r} is not {AMZ_DATE_FORMAT}",
            )
        if amz_date[:8] != scope_date:
            return self._fail(
                verdict,
                "InvalidSignatureException",
                f"Credential date {scope_date} does not match X-Amz-Date {amz_date}",
            )
        now = now or datetime.datetime.now(datetime.timezone.utc)
        if signed_at < now - self.max_skew:
            return self._fail(
                verdict,
                "InvalidSignatureException",
                f"Signature expired: {amz_date} is now earlier than"
                f" {(now - self.max_skew).strftime(AMZ_DATE_FORMAT)}",
            )
        if signed_at > now + self.max_skew:
            return self._fail(
                verdict,
                "InvalidSignatureException",
                f"Signature not yet current: {amz_date} is still later than"
                f" {(now + self.max_skew).strftime(AMZ_DATE_FORMAT)}",
            )

        names = signed.split(";")
        verdict.signed_headers = names
        if names != sorted(set(names)) or any(n != n.lower() or not n for n in names):
            return self._fail(
                verdict,
                "IncompleteSignatureException",
                f"SignedHeaders {signed!r} is not lower-case, sorted and unique",
            )
        for required in ("host", "x-amz-date"):
            if required not in names:
                return self._fail(
                    verdict,
                    "IncompleteSignatureException",
                    f"SignedHeaders {signed!r} lacks {required}",
                )
        absent = [n for n in names if not received.get_all(n)]
        if absent:
            return self._fail(
                verdict,
                "IncompleteSignatureException",
                f"signed headers {absent} are not in the request",
            )

        tokens = received.get_all("x-amz-security-token") or []
        if key.session_token:
            if tokens != [key.session_token]:
                return self._fail(
                    verdict,
                    "UnrecognizedClientException",
                    f"{INVALID_TOKEN} (X-Amz-Security-Token missing or not the session token)",
                )
        elif tokens:
            return self._fail(
                verdict,
                "UnrecognizedClientException",
                f"{INVALID_TOKEN} (unexpected X-Amz-Security-Token)",
            )

        body_hash = hashlib.sha256(body).hexdigest()
        content_hashes = received.get_all("x-amz-content-sha256") or []
        if content_hashes and content_hashes != [body_hash]:
            return self._fail(
                verdict,
                "InvalidSignatureException",
                f"X-Amz-Content-Sha256 {content_hashes} does not match the body's {body_hash}",
            )

        try:
            params = decode_query(raw_query, self.plus_is_space)
        except (ValueError, UnicodeDecodeError) as e:
            return self._fail(verdict, "IncompleteSignatureException", f"query not decodable: {e}")

        host = (received.get_all("host") or [""])[0]
        request = _ReceivedRequest(method, f"http://{host}{path}", received, params, body, amz_date)
        signer = _Recompute(
            Credentials(key.access_key, key.secret_key, key.session_token or None),
            self.service,
            self.region,
            names,
        )
        verdict.canonical_request = signer.canonical_request(request)
        verdict.string_to_sign = signer.string_to_sign(request, verdict.canonical_request)
        expected_signature = signer.signature(verdict.string_to_sign, request)
        verdict.expected_authorization = (
            f"{ALGORITHM} Credential={access_key}/{signer.credential_scope(request)}, "
            f"SignedHeaders={signed}, Signature={expected_signature}"
        )
        if signature != expected_signature:
            return self._fail(
                verdict,
                "InvalidSignatureException",
                "The request signature we calculated does not match the signature you provided."
                " Check your AWS Secret Access Key and signing method.",
            )
        if auths[0] != verdict.expected_authorization:
            return self._fail(
                verdict,
                "IncompleteSignatureException",
                "signature is right but the Authorization header is not in the canonical form",
            )
        verdict.ok = True
        return verdict

    @staticmethod
    def _fail(verdict, error_type, reason):
        verdict.ok = False
        verdict.error_type = error_type
        verdict.reason = reason
        return verdict
