"""yamlio.dump's fast path writes exactly what PyYAML writes, and refuses what it is unsure of."""
from __future__ import annotations

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from canonry import yamlio


def _pyyaml(obj) -> bytes:
    return yaml.dump(obj, Dumper=yamlio._Dumper, sort_keys=False, default_flow_style=False,
                     allow_unicode=True, width=100).encode("utf-8")


# Words near the edge of what may be plain: YAML types, indicators, colons, dots, long runs.
_TRICKY = ["true", "no", "On", "null", "~", "12", "0x1f", "1_000", "1e3", ".inf", "1:20", "2026-11-23",
           "2026-11-23T21:54:42Z", "a:b", "a:", ":a", "-a", "a-", "@a", "a@b.c", "sha256:" + "f" * 64,
           "v0", "v10", "<<", "=", "a#b", "a b", "", "x" * 121, "é", "a'b", "-", "--", "a::b"]
_words = st.one_of(st.sampled_from(_TRICKY), st.text(alphabet="aZ09_.@/+-: #'~", max_size=12))
_scalars = st.one_of(_words, st.integers(-10**6, 10**6), st.none(), st.booleans(), st.floats(allow_nan=False))
_values = st.one_of(_scalars, st.lists(_scalars, max_size=3),
                    st.dictionaries(_words, _scalars, max_size=3))


@settings(max_examples=600, deadline=None)
@given(st.dictionaries(_words, _values, max_size=6))
def test_fast_path_writes_what_pyyaml_writes(record):
    fast = yamlio._dump_simple(record)
    if fast is not None:
        assert fast == _pyyaml(record)
    assert yamlio.dump(record) == _pyyaml(record)


def test_the_records_of_a_promotion_take_the_fast_path():
    link = {"format": 1, "artifact": "gemma-finetuned:v3", "digest": "sha256:" + "a" * 64,
            "description": "", "tags": [], "linked_at": "2026-11-23T21:54:42Z", "linked_by": "ml@example.com"}
    collection = {"format": 1, "type": "model", "description": "", "tags": ["nlp"], "next_version": 4,
                  "created_at": "2026-11-23T21:54:42Z", "created_by": "ml@example.com"}
    aliases = {"format": 1, "aliases": {"production": "v3", "staging": "v2"}}
    for record in (link, collection, aliases):
        assert yamlio._dump_simple(record) == _pyyaml(record)
        assert yamlio.load(yamlio.dump(record)) == record
