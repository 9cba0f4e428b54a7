"""Story-string templates (the Handlebars subset) and SillyTavern's formatting presets.

The expected template outputs are what handlebars.js 4.7.8 renders for the same template
and values, with SillyTavern's ``trim`` and ``helperMissing`` helpers registered.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.prompt.handlebars import TemplateError, compile_template
from bot.prompt.presets import (
    CHATML,
    CHATML_CONTEXT,
    DEFAULT_STORY_STRING,
    ContextTemplate,
    InstructTemplate,
    PresetError,
    formatting_from_st,
    load_formatting,
    select_instruct,
)

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "sillytavern"
PARAMS = {"system": "SYS", "description": "DESC", "empty": "", "user": "U"}

HANDLEBARS = [
    ("{{#if system}}{{system}}\n{{/if}}{{#if missing}}X\n{{/if}}end", "SYS\nend"),
    # standalone block lines vanish with their line break
    (
        "{{#if description}}\n{{description}}\n{{/if}}\n{{#if empty}}\nnothing\n{{/if}}\ntail",
        "DESC\ntail",
    ),
    ("  {{#unless empty}}\n  shown\n  {{else}}\n  hidden\n  {{/unless}}\nafter", "  shown\nafter"),
    ("a {{~#if system~}} b {{~/if~}} c", "abc"),
    ("{{! a comment }}\n{{!-- another --}}x{{user}}", "xU"),
    ("{{#if empty}}A{{else if system}}B{{else}}C{{/if}}", "B"),
    ("\\{{user}} {{user}}", "{{user}} U"),
    # unknown names go to the macro pass as written (ST's helperMissing)
    ("{{{user}}} {{& user}} {{time}} {{random::a::b}}", "U U {{time}} {{random::a::b}}"),
    ("x\n{{trim}}\ny", "x\n{{trim}}\ny"),
    ("{{^empty}}inv{{/empty}}|{{^missing}}gone{{/missing}}", "|"),
]


@pytest.mark.parametrize(("source", "expected"), HANDLEBARS)
def test_renders_like_handlebars(source: str, expected: str) -> None:
    template = compile_template(source)
    assert template.render(PARAMS, lambda name: "{{" + name + "}}") == expected


@pytest.mark.parametrize(
    "source",
    [
        "{{#if a}}open",
        "{{/if}}",
        "{{#if a}}x{{/unless}}",
        "{{#each list}}x{{/each}}",
        "{{> partial}}",
        "{{#if}}x{{/if}}",
        "{{user",
    ],
)
def test_bad_templates_are_named_errors(source: str) -> None:
    with pytest.raises(TemplateError, match="story_string"):
        compile_template(source)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="{}#/~!^ \nifunlesxys\\", max_size=120))
def test_any_template_parses_or_fails_cleanly(source: str) -> None:
    try:
        template = compile_template(source)
    except TemplateError:
        return
    assert isinstance(template.render(PARAMS, lambda n: ""), str)


def test_missing_names_and_content_go_through_callbacks() -> None:
    template = compile_template("<USER> {{char}} {{weekday}}")
    out = template.render(
        {"char": "Mira"}, lambda name: f"[{name}]", lambda text: text.replace("<USER>", "Sam")
    )
    assert out == "Sam Mira [weekday]"


# -- presets ----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted((FIXTURES / "instruct").glob("*.json")), ids=str)
def test_every_instruct_preset_loads(path: Path) -> None:
    presets = load_formatting(path)
    assert presets.instruct is not None and presets.instruct.name == path.stem
    data = json.loads(path.read_text())
    assert presets.instruct.input_sequence == data["input_sequence"]
    assert presets.instruct.names_behavior == data["names_behavior"]


@pytest.mark.parametrize("path", sorted((FIXTURES / "context").glob("*.json")), ids=str)
def test_every_context_preset_loads_and_renders(path: Path) -> None:
    context = load_formatting(path).context
    assert context is not None and context.name == path.stem
    out = context.template.render({"system": "S", "persona": "P"}, lambda n: "")
    assert "S\n" in out and "P" in out


@pytest.mark.parametrize("path", sorted((FIXTURES / "sysprompt").glob("*.json")), ids=str)
def test_every_system_prompt_loads(path: Path) -> None:
    sysprompt = load_formatting(path).sysprompt
    assert sysprompt is not None and sysprompt.name == path.stem and sysprompt.enabled


def test_chatml_constants_equal_the_shipped_presets() -> None:
    assert load_formatting(FIXTURES / "instruct" / "ChatML.json").instruct == CHATML
    context = load_formatting(FIXTURES / "context" / "ChatML.json").context
    assert context is not None and context.story_string == CHATML_CONTEXT.story_string


def test_old_instruct_shape_migrates() -> None:
    old = {
        "name": "Old",
        "system_prompt": "Be {{char}}.",
        "input_sequence": "### Instruction:",
        "output_sequence": "### Response:",
        "separator_sequence": "\n\n",
        "names": False,
        "names_force_groups": False,
        "enabled": True,
    }
    presets = formatting_from_st(old, "old.json")
    assert presets.instruct is not None
    assert presets.instruct.output_suffix == "\n\n"
    assert presets.instruct.names_behavior == "none"
    assert presets.sysprompt is not None and presets.sysprompt.content == "Be {{char}}."
    assert presets.instruct_enabled is True
    always = formatting_from_st({**old, "names": True}, "old.json").instruct
    assert always is not None and always.names_behavior == "always"


def test_newer_shapes_and_combined_exports() -> None:
    master = {
        "instruct": {
            "input_sequence": "<u>",
            "output_sequence": "<a>",
            "story_string_prefix": "<s>",
            "story_string_suffix": "</s>",
            "sequences_as_stop_strings": False,
            "future_field": {"kept": "ignored"},
        },
        "context": {"story_string": "{{system}}", "story_string_position": 1},
        "sysprompt": {"name": "X", "content": "Hi", "post_history": "Stay in character."},
    }
    presets = formatting_from_st(master, "master.json")
    assert presets.instruct is not None and presets.instruct.story_string_prefix == "<s>"
    assert not presets.instruct.sequences_as_stop_strings
    assert presets.context is not None and presets.context.story_string_position == 1
    assert presets.sysprompt is not None and presets.sysprompt.post_history.startswith("Stay")


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"input_sequence": 5, "output_sequence": ""}, "input_sequence"),
        ({"input_sequence": "", "wrap": "maybe"}, "wrap"),
        ({"input_sequence": "", "names_behavior": "sometimes"}, "names_behavior"),
        ({"story_string": ["x"]}, "story_string"),
        ({"story_string": "{{#if x}}"}, "story_string"),
        ({"something": "else"}, "not an instruct"),
    ],
)
def test_bad_presets_name_the_field(data: dict[str, object], field: str) -> None:
    with pytest.raises(
        PresetError if field != "story_string" or "#" not in str(data) else TemplateError
    ) as caught:
        formatting_from_st(data, "bad.json")
    assert field in str(caught.value)


def test_bad_files_name_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(PresetError, match=r"broken\.json: not valid JSON"):
        load_formatting(broken)
    with pytest.raises(PresetError, match=r"missing\.json: cannot read"):
        load_formatting(tmp_path / "missing.json")


def test_defaults_are_sillytaverns() -> None:
    assert ContextTemplate().story_string == DEFAULT_STORY_STRING
    assert InstructTemplate().names_behavior == "force" and InstructTemplate().wrap


def test_activation_regex_picks_a_template_for_a_model() -> None:
    llama = InstructTemplate(name="Llama 3", activation_regex="/llama-?3/i")
    mistral = InstructTemplate(name="Mistral", activation_regex="mistral")
    broken = InstructTemplate(name="A broken one", activation_regex="(unclosed")
    templates = [mistral, llama, broken]
    assert select_instruct(templates, "Meta-Llama-3-8B-Instruct") == llama
    assert select_instruct(templates, "mistral-7b") == mistral
    assert select_instruct(templates, "qwen2") is None
