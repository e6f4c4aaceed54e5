"""A process's first use of llama.cpp from several threads at once (a server's first requests).

Each request thread routes llama.cpp's logs on first use. Unguarded, two threads could each set
their own log callback: llama.cpp kept the one whose Python object the other thread had just
replaced, and the model load's first log line jumped into freed memory. `serve --ray`'s first
replica died that way with SIGSEGV in `llama_model_load_from_file` when the autoscaling test sent
three requests at once (7 of 60 fresh interpreters crashed with the script below, 0 of 60 now).
"""

from __future__ import annotations

import ctypes
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ollamacli.engine.llamalib import LogRouter


class SlowLogLibrary:
    """The two calls `LogRouter.install` makes, with a setter that lets other threads run."""

    def __init__(self) -> None:
        self.held: object | None = None  # the callback "llama.cpp" would call
        self.sets = 0

    @staticmethod
    def llama_log_callback(function: Callable[..., None]) -> Callable[..., None]:
        return function

    def llama_log_set(self, callback: object, _user_data: ctypes.c_void_p) -> None:
        self.sets += 1
        time.sleep(0.02)  # ctypes releases the GIL around the C call: the window is real
        self.held = callback


def test_threads_arriving_together_install_one_callback_and_keep_it_alive() -> None:
    library = SlowLogLibrary()
    router = LogRouter()
    start = threading.Barrier(8)

    def first_use() -> None:
        start.wait()
        router.install(library)

    threads = [threading.Thread(target=first_use) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert library.sets == 1
    assert router.callback is not None
    assert library.held is router.callback  # what llama.cpp calls is what the router keeps


@pytest.mark.llama
def test_fresh_processes_survive_three_threads_reaching_llama_cpp_together(
    smollm2_path: Path,
) -> None:
    # Three threads make the process's first use of the library together, then the model
    # loads (llama.cpp logs at once). In child processes, so that a crash fails this test only.
    script = textwrap.dedent(
        f"""
        import threading
        from pathlib import Path
        from ollamacli.engine.base import LoadConfig
        from ollamacli.engine.llama import LlamaCppFactory, format_grammar

        start = threading.Barrier(3)

        def request():
            start.wait()
            format_grammar({{"type": "array", "items": {{"type": "integer"}}}})

        threads = [threading.Thread(target=request) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        engine = LlamaCppFactory().load(LoadConfig(Path({str(smollm2_path)!r}), num_ctx=256))
        print(engine.tokenize("hello"))
        engine.close()
        """
    )
    for _ in range(12):  # before the fix about one fresh process in nine crashed
        done = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 0, f"exit {done.returncode}: {done.stderr[-2000:]}"
        assert done.stdout.strip().startswith("["), done.stdout
