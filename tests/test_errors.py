"""One exception root: the pipeline's own errors derive from SerError (and the built-in they replaced)."""

import pytest

from ser_tasks import errors
from ser_tasks.corpus.corpora.base import ParseError
from ser_tasks.corpus.split import LeakageError
from ser_tasks.signal.audio import AudioError
from ser_tasks.store.zarr_store import StoreConflictError


@pytest.mark.parametrize("cls, builtin", [(errors.InputError, ValueError), (AudioError, ValueError),
                                          (ParseError, ValueError), (LeakageError, ValueError),
                                          (StoreConflictError, RuntimeError)])
def test_each_project_error_is_a_ser_error_and_still_its_builtin(cls, builtin):
    assert issubclass(cls, errors.SerError) and issubclass(cls, builtin)


def test_library_input_errors_are_ser_errors(tmp_path):
    from ser_tasks.corpus.manifest import build_manifest

    (tmp_path / "empty").mkdir()
    with pytest.raises(errors.SerError, match="no audio files"):
        build_manifest(str(tmp_path / "empty"))
