"""Storage options: credentials sealed in transit, revealed only for remote filesystems."""

import pytest
from fastapi.encoders import jsonable_encoder

from ser_tasks.remote import fs_options, is_remote, parse_options, redacted, reveal


def test_credentials_are_sealed_everywhere_but_at_the_filesystem():
    opts = parse_options('{"key": "AKIAEXAMPLE", "secret": "s3cr3t-value", "client_kwargs": {"region_name": "eu"}}',
                         "http://127.0.0.1:9000")
    for shown in (repr(opts), str(jsonable_encoder(opts)), str(redacted(opts))):
        assert "s3cr3t-value" not in shown and "AKIAEXAMPLE" not in shown
    assert "http://127.0.0.1:9000" in str(jsonable_encoder(opts))  # an endpoint is not a secret
    plain = fs_options("s3://bucket/corpus", opts)
    assert plain == {"key": "AKIAEXAMPLE", "secret": "s3cr3t-value", "client_kwargs": {"region_name": "eu"},
                     "endpoint_url": "http://127.0.0.1:9000"}
    assert reveal(opts) == plain


def test_local_paths_get_no_remote_options(tmp_path):
    opts = parse_options('{"key": "k"}')
    assert fs_options(str(tmp_path), opts) == {} and fs_options(f"file://{tmp_path}", opts) == {}
    assert is_remote("s3://b/x") and is_remote("memory://x") and not is_remote(str(tmp_path))
    assert parse_options(None) is None


@pytest.mark.parametrize("text", ["{not json", "[1, 2]"])
def test_bad_options_are_refused(text):
    with pytest.raises(ValueError, match="storage-options"):
        parse_options(text)
