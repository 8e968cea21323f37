"""LiveCodeBench-CPP grading: extract the ```cpp block, compile with g++, run every stdin test
under the sandbox limits and compare whitespace-normalised output.

Test cases come from the prepared row (`public_test_cases` + `private_test_cases`: a JSON list of
{"input", "output", "testtype"}, or LiveCodeBench's base64+zlib-compressed form of it).
"""

from __future__ import annotations

import base64
import io
import json
import pickle
import shutil
import tempfile
import zlib
from pathlib import Path

from xp.nemo_skills.graders.code_python import extract_code
from xp.nemo_skills.graders.sandbox import Limits, run_limited

COMPILE_LIMITS = Limits(timeout_s=60, memory_mb=2048, file_size_mb=256)


class _StrOnlyUnpickler(pickle.Unpickler):
    """LiveCodeBench pickles a plain JSON string; refuse anything that needs a class (unsafe)."""

    def find_class(self, module, name):
        raise ValueError(f"refusing to unpickle {module}.{name} from test data")


def decode_tests(value) -> list[dict]:
    """Test cases as JSON text, or LiveCodeBench's packed form base64(zlib(json | pickle(json)))."""
    if not value:
        return []
    if isinstance(value, list):
        return value
    text = value.strip()
    if not text.startswith("["):
        raw = zlib.decompress(base64.b64decode(text))
        if raw[:1] == b"\x80":  # a pickle: only a str is accepted
            raw = _StrOnlyUnpickler(io.BytesIO(raw)).load()
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        if not isinstance(text, str) or not text.lstrip().startswith("["):
            raise ValueError("unsupported test case encoding (expected a JSON list)")
    return json.loads(text)


def _norm(text: str) -> list[str]:
    return [line.rstrip() for line in text.strip().splitlines()]


def grade_code_cpp(row: dict, generation: str, timeout_s: float = 6.0, memory_mb: int = 1024) -> dict:
    code = extract_code(generation, language="cpp")
    tests = decode_tests(row.get("public_test_cases")) + decode_tests(row.get("private_test_cases"))
    base = {"completion": code, "graded_list": [False]}
    if not tests:
        raise ValueError(f"row {row.get('task_id')} has no test cases; the LiveCodeBench-CPP data is incomplete")
    if not code:
        return {**base, "is_correct": False, "test_status": "no code"}
    if shutil.which("g++") is None:
        raise RuntimeError("g++ is not installed; livecodebench-cpp grading needs it (apt-get install g++)")
    with tempfile.TemporaryDirectory(prefix="nld-cpp-") as tmp:
        Path(tmp, "main.cpp").write_text(code, encoding="utf-8")
        comp = run_limited(["g++", "-O2", "-std=c++17", "-o", "main", "main.cpp"], COMPILE_LIMITS, Path(tmp),
                           network_ns=False)
        if not comp.ok:
            return {**base, "is_correct": False, "test_status": "compile error"}
        limits = Limits(timeout_s=timeout_s, memory_mb=memory_mb)
        for case in tests:
            if case.get("testtype", "stdin") != "stdin":
                return {**base, "is_correct": False, "test_status": "unsupported functional test"}
            res = run_limited(["./main"], limits, Path(tmp), stdin=case["input"])
            if not res.ok or _norm(res.stdout) != _norm(case["output"]):
                return {**base, "is_correct": False, "test_status": res.status() if not res.ok else "wrong answer"}
    return {"completion": code, "graded_list": [True], "is_correct": True, "test_status": "pass"}
