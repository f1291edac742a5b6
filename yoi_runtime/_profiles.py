"""Profiles: what kind of Worker to create."""

from __future__ import annotations

import attrs

__all__ = ["COMPANION", "TOOL_PROFILES", "Profile"]


@attrs.frozen
class Profile:
    """What kind of Worker to create.

    Attributes:
        name: The name callers pick the profile by.
        system_prompt: The default system prompt, or None.
        tools: Tool grants; always explicit, empty for a Companion.
    """

    name: str
    system_prompt: str | None = None
    tools: tuple[str, ...] = ()


#: A Worker with no tools that converses.
COMPANION = Profile(
    name="companion",
    system_prompt="You are a helpful, friendly companion. Answer briefly.",
)


#: Profiles that need tools; a Runtime without them refuses such Workers as
#: unsupported (the registry can route them elsewhere), not as unknown.
TOOL_PROFILES = frozenset({"coder", "reviewer"})
