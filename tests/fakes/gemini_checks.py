"""How the fake Gemini server judges a request: Google's body rules and its JWT checks."""

from __future__ import annotations

import base64
import json
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

SCOPE = "https://www.googleapis.com/auth/cloud-platform"
_TOP_KEYS = {
    "contents",
    "systemInstruction",
    "generationConfig",
    "safetySettings",
    "tools",
    "toolConfig",
    "cachedContent",
}
_CONFIG_KEYS = {
    "temperature",
    "topP",
    "topK",
    "maxOutputTokens",
    "stopSequences",
    "candidateCount",
    "seed",
    "presencePenalty",
    "frequencyPenalty",
    "responseMimeType",
    "responseSchema",
    "thinkingConfig",
}
CATEGORIES = {
    "HARM_CATEGORY_HARASSMENT",
    "HARM_CATEGORY_HATE_SPEECH",
    "HARM_CATEGORY_SEXUALLY_EXPLICIT",
    "HARM_CATEGORY_DANGEROUS_CONTENT",
    "HARM_CATEGORY_CIVIC_INTEGRITY",
}
VERTEX_CATEGORIES = CATEGORIES | {
    "HARM_CATEGORY_IMAGE_HATE",
    "HARM_CATEGORY_IMAGE_DANGEROUS_CONTENT",
    "HARM_CATEGORY_IMAGE_HARASSMENT",
    "HARM_CATEGORY_IMAGE_SEXUALLY_EXPLICIT",
    "HARM_CATEGORY_JAILBREAK",
}
THRESHOLDS = {
    "OFF",
    "BLOCK_NONE",
    "BLOCK_ONLY_HIGH",
    "BLOCK_MEDIUM_AND_ABOVE",
    "BLOCK_LOW_AND_ABOVE",
}


def check_body(body: Any, *, counting: bool, vertex: bool) -> str:
    """Google's complaint about a generate or countTokens body, or ``""``."""
    if not isinstance(body, dict):
        return "Invalid JSON payload received."
    extra = sorted(set(body) - _TOP_KEYS)
    if extra:
        return f'Invalid JSON payload received. Unknown name "{extra[0]}": Cannot find field.'
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        return "* GenerateContentRequest.contents: contents is not specified"
    previous = ""
    for i, content in enumerate(contents):
        if not isinstance(content, dict) or content.get("role") not in ("user", "model"):
            return f"Please use a valid role: user, model. (contents[{i}])"
        if content["role"] == previous:
            return f"contents[{i}]: consecutive {previous!r} turns were not merged"
        previous = content["role"]
        problem = _parts(content.get("parts"), f"contents[{i}]")
        if problem:
            return problem
    if counting:
        return ""
    system = body.get("systemInstruction")
    if system is not None:
        if not isinstance(system, dict) or set(system) - {"parts", "role"}:
            return "Invalid systemInstruction"
        problem = _parts(system.get("parts"), "systemInstruction")
        if problem:
            return problem
    return _check_config(body.get("generationConfig")) or _check_safety(
        body.get("safetySettings"), vertex
    )


def _check_config(config: Any) -> str:
    if config is None:
        return ""
    if not isinstance(config, dict):
        return "Invalid generationConfig"
    extra = sorted(set(config) - _CONFIG_KEYS)
    if extra:
        return (
            f'Invalid JSON payload received. Unknown name "{extra[0]}" at '
            "'generation_config': Cannot find field."
        )
    limit = config.get("maxOutputTokens")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        return f"Invalid maxOutputTokens: {limit!r}"
    if config.get("candidateCount", 1) != 1:
        return "Only one candidate can be specified in the current model"
    if "topK" in config and (not isinstance(config["topK"], int) or config["topK"] < 1):
        return f"Invalid topK: {config['topK']!r}"
    stops = config.get("stopSequences", [])
    if not isinstance(stops, list) or len(stops) > 5:
        return (
            "* GenerateContentRequest.generation_config.stop_sequences: "
            "must have at most 5 stop sequences"
        )
    if any(not isinstance(s, str) or not 1 <= len(s) <= 16 for s in stops):
        return "Stop sequences must be 1 to 16 characters long"
    thinking = config.get("thinkingConfig")
    if thinking is not None:
        if not isinstance(thinking, dict) or set(thinking) - {
            "thinkingBudget",
            "includeThoughts",
        }:
            return "Invalid thinkingConfig"
        if thinking.get("includeThoughts") and thinking.get("thinkingBudget") == 0:
            return "Unable to submit request because includeThoughts requires thinking"
    return ""


def _check_safety(settings: Any, vertex: bool) -> str:
    if settings is None:
        return ""
    allowed = VERTEX_CATEGORIES if vertex else CATEGORIES
    if not isinstance(settings, list):
        return "Invalid safetySettings"
    for i, item in enumerate(settings):
        if not isinstance(item, dict) or item.get("category") not in allowed:
            return (
                f"Invalid value at 'safety_settings[{i}].category' "
                f"(type.googleapis.com/google.ai.generativelanguage.v1beta.HarmCategory), "
                f"{item.get('category') if isinstance(item, dict) else item!r}"
            )
        if item.get("threshold") not in THRESHOLDS:
            return f"Invalid value at 'safety_settings[{i}].threshold'"
    return ""


def _parts(parts: Any, where: str) -> str:
    if not isinstance(parts, list) or not parts:
        return f"{where}.parts: must not be empty"
    for part in parts:
        if not isinstance(part, dict) or not isinstance(part.get("text"), str):
            return f"{where}.parts: only text parts are expected here, got {part!r}"
        if not part["text"]:
            return (
                "Unable to submit request because it has an empty text parameter. Add a value "
                "to the parameter and try again."
            )
    return ""


def verify_assertion(
    assertion: str, public_key: rsa.RSAPublicKey | None, *, email: str, audience: str, now: float
) -> tuple[str, dict[str, Any]]:
    """(Google's complaint or ``""``, the claims) for a service account's signed JWT."""
    if public_key is None or assertion.count(".") != 2:
        return "Invalid JWT.", {}
    head, body, signature = assertion.split(".")
    try:
        header = json.loads(_unb64(head))
        claims = json.loads(_unb64(body))
        public_key.verify(
            _unb64(signature), f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256()
        )
    except (ValueError, InvalidSignature):
        return "Invalid JWT Signature.", {}
    if header.get("alg") != "RS256":
        return "Invalid JWT: unsupported algorithm", {}
    if claims.get("iss") != email:
        return "Invalid issuer: unknown service account", {}
    if claims.get("aud") != audience:
        return "Invalid JWT: audience is not the token endpoint", {}
    if claims.get("scope") != SCOPE:
        return "Invalid OAuth scope or ID token audience provided.", {}
    iat, exp = claims.get("iat"), claims.get("exp")
    if not isinstance(iat, int) or not isinstance(exp, int):
        return "Invalid JWT: iat and exp are required", {}
    if exp - iat > 3600 or iat > now + 60 or exp < now:
        return (
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a "
            "reasonable timeframe. Check your iat and exp values in the JWT claim.",
            {},
        )
    return "", claims


def _unb64(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
