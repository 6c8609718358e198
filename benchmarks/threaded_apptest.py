"""Many streamlit.testing.v1.AppTest sessions in threads of one process, as a server runs them.

AppTest is made for one test at a time. Each AppTest.run installs a mock Streamlit Runtime in
the process-wide `Runtime._instance` and sets it back to None when it returns, and every
script run starts with `runtime.get_instance()` (streamlit 1.67: testing/v1/app_test.py lines
663 and 727, runtime/scriptrunner/script_runner.py line 636). With sessions in threads, one
session's run ending took the Runtime away from another's starting script thread ("Runtime
hasn't been created!"): that thread died without running the page, and AppTest.run then failed
with KeyError '...SCRIPT_RUN_WITHOUT_ERRORS' (on a session's first run; on a later one it
returned an empty page). AppTest also patches `global.appTest` in and out around each run
(patch_config_options), which threads restore out of order.
"""

from __future__ import annotations

import contextlib
import threading


@contextlib.contextmanager
def sessions_share_one_runtime():
    """While inside: one Streamlit Runtime for every AppTest of the process, as the server
    has one for all its sessions, and `global.appTest` set for the process.

    AppTest.run sets the process-wide `Runtime._instance` to a fresh mock at its start and to
    None at its end, which in threads takes the Runtime away from other sessions' script runs
    (see above); here `Runtime.instance()` and `exists()` answer with one
    Runtime, built as AppTest builds its mock, whatever AppTest assigns. AppTest.run also
    replaces the module-wide `config.get_option` for the run (patch_config_options); runs
    ending out of order restore it out of order, leaving a run without `global.appTest` and a
    stale patch installed after all. Here the option is set once and that patch is a no-op."""
    from unittest import mock

    from streamlit import config
    from streamlit.components.v2.component_manager import BidiComponentManager
    from streamlit.runtime import Runtime
    from streamlit.runtime.caching.storage.dummy_cache_storage import MemoryCacheStorageManager
    from streamlit.runtime.dataframe_source_manager import DataframeSourceManager
    from streamlit.runtime.media_file_manager import MediaFileManager
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
    from streamlit.testing.v1 import app_test

    server = mock.MagicMock(spec=Runtime)
    server.media_file_mgr = MediaFileManager(MemoryMediaFileStorage("/mock/media"))
    server.dataframe_source_mgr = DataframeSourceManager()
    server.cache_storage_manager = MemoryCacheStorageManager()
    server.bidi_component_registry = BidiComponentManager()
    server.bidi_component_registry.discover_and_register_components(start_file_watching=False)
    app_test_before = config.get_option("global.appTest")
    config.set_option("global.appTest", True)
    try:
        with (
            mock.patch.object(Runtime, "instance", classmethod(lambda cls: server)),
            mock.patch.object(Runtime, "exists", classmethod(lambda cls: True)),
            mock.patch.object(app_test, "patch_config_options", contextlib.nullcontext),
        ):
            yield server
    finally:
        config.set_option("global.appTest", app_test_before)


@contextlib.contextmanager
def script_thread_crashes():
    """The exceptions that end a thread of the process while inside (a script thread that
    dies never shows a page: AppTest only sees that it stopped), as 'Type: message'."""
    crashes: list[str] = []
    before = threading.excepthook

    def record(hook_args) -> None:
        crashes.append(f"{hook_args.exc_type.__name__}: {hook_args.exc_value}")
        before(hook_args)

    threading.excepthook = record
    try:
        yield crashes
    finally:
        threading.excepthook = before
