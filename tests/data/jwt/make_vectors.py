#!/usr/bin/env python3
"""Make the JWT test vectors in this folder (standard library only).

    python3 tests/data/jwt/make_vectors.py

Writes one `<name>.jwt` per vector and `vectors.json`, which lists each vector with the
rejection code lastmile must give it ("ok" for accepted). The tokens are checked as of NOW with
the default `[auth]` settings (issuer and audience "lastmile", leeway 30 s, maximum lifetime
30 days, minimum secret 32 bytes). SECRET is a test-only secret: it signs nothing else.
The output is deterministic: running the script again gives the same files.
"""

import base64
import hashlib
import hmac
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
SECRET = b"vector-secret:Q7mZp2Lx9RkT4vWc8NbY3sHd6FgJ1aEu"
OTHER_SECRET = b"another-secret:W2eR5tY8uI1oP4aS7dF0gH3jK6lZ9xCv"
NOW = 1_800_000_000  # 2027-01-15T08:00:00Z
PINNED = {"typ": "JWT", "alg": "HS256"}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def compact(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def sign(signing_input: str, key: bytes = SECRET, digest=hashlib.sha256) -> str:
    return b64(hmac.new(key, signing_input.encode(), digest).digest())


def token(claims, header=PINNED, key=SECRET, digest=hashlib.sha256) -> str:
    signing_input = b64(compact(header)) + "." + b64(compact(claims))
    return signing_input + "." + sign(signing_input, key, digest)


def claims(**changes):
    c = {
        "iss": "lastmile",
        "aud": "lastmile",
        "sub": "alice",
        "exp": NOW + 8 * 3600,
        "iat": NOW - 60,
        "nbf": NOW - 60,
        "jti": "0b5e3c1a-8d52-4c55-9a0e-6c0f6f4f2b11",
        "session_id": "019a1b2c-3d4e-7f60-8a9b-0c1d2e3f4a5b",
        "tier": "user",
        "scope": "tools:call resources:read",
        "roles": ["developer"],
        "user_type": "human",
    }
    for k, v in changes.items():
        if v is None:
            c.pop(k, None)
        else:
            c[k] = v
    return c


def main():
    vectors = []

    def add(name, tok, expect):
        with open(os.path.join(HERE, name + ".jwt"), "w") as f:
            f.write(tok + "\n")
        vectors.append({"name": name, "expect": expect})

    valid = token(claims())
    h, p, s = valid.split(".")
    add("valid", valid, "ok")
    minimal = {k: claims()[k] for k in ["iss", "aud", "sub", "exp", "jti", "session_id", "tier"]}
    add("valid-minimal", token(minimal), "ok")

    none_header = b64(compact({"alg": "none", "typ": "JWT"}))
    add("alg-none", none_header + "." + p + ".", "alg_none")
    add("alg-hs384", token(claims(), {"typ": "JWT", "alg": "HS384"}, digest=hashlib.sha384), "wrong_algorithm")
    add("alg-hs512", token(claims(), {"typ": "JWT", "alg": "HS512"}, digest=hashlib.sha512), "wrong_algorithm")
    # Key confusion: an RS256 header with an HMAC over the secret as if it were a public key.
    add("alg-rs256", token(claims(), {"typ": "JWT", "alg": "RS256"}), "wrong_algorithm")
    add("header-unpinned", token(claims(), {"alg": "HS256", "typ": "JWT"}), "unexpected_header")

    add("wrong-secret", token(claims(), key=OTHER_SECRET), "bad_signature")
    admin_payload = b64(compact(claims(tier="admin")))
    add("tampered-payload", h + "." + admin_payload + "." + s, "bad_signature")
    flipped = s[:10] + ("A" if s[10] != "A" else "B") + s[11:]
    add("tampered-signature", h + "." + p + "." + flipped, "bad_signature")
    add("truncated", h + "." + p, "malformed")

    padded_payload = base64.b64encode(compact(claims(sub="al?ce>>"))).decode()
    signing_input = h + "." + padded_payload
    add("not-base64url", signing_input + "." + sign(signing_input), "not_base64url")
    add("oversized", token(claims(roles=["r" * 9000])), "oversized")

    add("expired", token(claims(exp=NOW - 3600, iat=NOW - 7200, nbf=NOW - 7200)), "expired")
    add("not-yet-valid", token(claims(nbf=NOW + 3600, exp=NOW + 7200)), "not_yet_valid")
    add("wrong-issuer", token(claims(iss="someone-else")), "wrong_issuer")
    add("wrong-audience", token(claims(aud="another-gateway")), "wrong_audience")
    for claim in ["iss", "aud", "sub", "exp", "jti", "session_id", "tier"]:
        add("missing-" + claim.replace("_", "-"), token(claims(**{claim: None})), "missing_claim")
    add("unknown-tier", token(claims(tier="superadmin")), "unknown_tier")
    add("lifetime-too-long", token(claims(iat=NOW, nbf=NOW, exp=NOW + 31 * 86400)), "lifetime_too_long")
    add("nbf-null", token(dict(claims(), nbf=None)), "invalid_claim")

    with open(os.path.join(HERE, "vectors.json"), "w") as f:
        json.dump({"now": NOW, "secret": SECRET.decode(), "vectors": vectors}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
