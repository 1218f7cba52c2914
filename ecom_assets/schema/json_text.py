"""JSON object text built with Arrow kernels, byte for byte as Spark's ``to_json`` writes it.

Dead letters' ``raw_record`` and events' ``extras`` are JSON objects of raw string values; they
are built over whole columns (a broken file can make every row a dead letter), with Jackson's
escapes, no spaces and keys in the order given, so replays and queries read one format.
"""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.compute as pc

Column = pa.Array | pa.ChunkedArray


def json_member(name: str, values: Column) -> Column:
    """``"name":"value"`` with '"' and '\\' escaped (as Jackson does), or ``"name":null``.

    Control characters are left for ``control_escaped``, applied once to the whole text.
    """
    for char in ("\\", '"'):  # backslash first; each is rare, so look before replacing
        if pc.any(pc.match_substring(values, char)).as_py():
            values = pc.replace_substring(values, char, "\\" + char)
    key = json.dumps(name)
    quoted = pc.binary_join_element_wise(f'{key}:"', values, '"', "")
    return pc.coalesce(quoted, f"{key}:null")


def control_escaped(json_text: Column) -> Column:
    """Control characters escaped as Jackson escapes them: \\b \\t \\n \\f \\r, others \\u00XX
    with upper-case hex (Python's json writes lower-case).

    JSON's own syntax has none, so they are escaped in the whole text at once, and only when a
    value holds one (rare).
    """
    if pc.any(pc.match_substring_regex(json_text, r"[\x00-\x1f]")).as_py():
        for char, escape in _CONTROL_ESCAPES.items():
            json_text = pc.replace_substring(json_text, char, escape)
    return json_text


_CONTROL_ESCAPES = {
    **{chr(code): f"\\u{code:04X}" for code in range(0x20)},
    **{char: f"\\{escape}" for char, escape in zip("\b\t\n\f\r", "btnfr", strict=True)},
}
