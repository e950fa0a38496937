"""Default judge prompts. ``{instruction}`` is filled per item; every other brace stays literal."""

DEFAULT_SYSTEM_PROMPT = (
    "You are a meticulous judge of instruction-based image editing. You look at the edited image "
    "and rate how well it fulfils the editing instruction and how natural it looks."
)
DEFAULT_USER_PROMPT = (
    'Editing instruction: "{instruction}"\n'
    "Rate the edited image from 0 (failed) to 10 (perfect). "
    'Answer with JSON only, in the form {"score": N}.'
)


def fill_prompt(template: str, instruction: str | None) -> str:
    """Replace ``{instruction}`` and nothing else: literal braces such as ``{"score": N}`` stay."""
    if instruction is None:
        return template
    return template.replace("{instruction}", instruction)
