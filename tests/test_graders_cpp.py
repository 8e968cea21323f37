"""livecodebench-cpp grading with problems written for this test (the real data is not available
here): g++ compile, stdin tests under limits, compressed private tests, and the clear error when
the real data is missing."""

from __future__ import annotations

import base64
import json
import time
import zlib

import pytest

from xp.nemo_skills.data import MissingDataError, load_rows
from xp.nemo_skills.graders import grade_rows
from xp.nemo_skills.graders.code_cpp import decode_tests, grade_code_cpp
from xp.nemo_skills.registry import load_registry

SUM_TESTS = [{"input": "1 2\n", "output": "3\n", "testtype": "stdin"},
             {"input": "-5 5\n", "output": "0", "testtype": "stdin"}]
PRIVATE = [{"input": "2000000000 2000000000\n", "output": "4000000000\n", "testtype": "stdin"}]


def packed(tests: list[dict]) -> str:
    return base64.b64encode(zlib.compress(json.dumps(tests).encode())).decode()


ROW = {"task_id": "sum", "question": "Read two integers and print their sum.", "difficulty": "easy",
       "subset_for_metrics": "easy", "public_test_cases": json.dumps(SUM_TESTS), "private_test_cases": packed(PRIVATE)}


def cpp(body: str) -> str:
    return f"Here you go:\n```cpp\n#include <iostream>\n#include <vector>\nusing namespace std;\n{body}\n```"


GOOD = "int main(){long long a,b;cin>>a>>b;cout<<a+b<<endl;}"
PROGRAMS = {
    "correct": (GOOD, True, "pass"),
    "int overflow (fails the private test)": ("int main(){int a,b;cin>>a>>b;cout<<a+b<<endl;}", False, "wrong answer"),
    "wrong answer": ("int main(){long long a,b;cin>>a>>b;cout<<a-b<<endl;}", False, "wrong answer"),
    "compile error": ("int main(){ this is not c++ }", False, "compile error"),
    "infinite loop": ("int main(){volatile long long x=0; while(true){x++;}}", False, "timeout"),
    "memory bomb": ("int main(){vector<char> v; while(true){v.resize(v.size()+(1<<26), 1);} }", False, None),
    "crash": ("int main(){int *p=nullptr; *p=1;}", False, None),
}


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_cpp_programs(name):
    body, ok, status = PROGRAMS[name]
    start = time.monotonic()
    result = grade_code_cpp(ROW, cpp(body), timeout_s=2, memory_mb=256)
    assert result["is_correct"] is ok, result
    assert result["graded_list"] == [ok]
    if status:
        assert result["test_status"] == status
    assert time.monotonic() - start < 60


def test_decode_tests_forms():
    assert decode_tests(json.dumps(SUM_TESTS)) == SUM_TESTS
    assert decode_tests(packed(PRIVATE)) == PRIVATE
    assert decode_tests(SUM_TESTS) == SUM_TESTS
    assert decode_tests("") == []
    import pickle

    lcb_packed = base64.b64encode(zlib.compress(pickle.dumps(json.dumps(PRIVATE)))).decode()
    assert decode_tests(lcb_packed) == PRIVATE

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with pytest.raises(ValueError, match="refusing to unpickle"):
        decode_tests(base64.b64encode(zlib.compress(pickle.dumps(Evil()))).decode())


def test_grade_rows_and_missing_tests_error():
    spec = load_registry().get("livecodebench-cpp")
    rows = grade_rows(spec, [{**ROW, "generation": cpp(GOOD)}, {**ROW, "generation": "no code at all"}])
    assert [r["is_correct"] for r in rows] == [True, False]
    with pytest.raises(ValueError, match="no test cases"):
        grade_code_cpp({"task_id": "x"}, cpp(GOOD))


def test_missing_real_data_names_the_prepare_command(tmp_path):
    spec = load_registry().get("livecodebench-cpp")
    with pytest.raises(MissingDataError) as err:
        load_rows(spec, tmp_path)
    msg = str(err.value)
    assert "livecodebench-cpp" in msg and "python -m xp.nemo_skills.prepare_data livecodebench-cpp" in msg
