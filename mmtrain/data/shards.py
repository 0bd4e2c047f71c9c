"""Reading one webdataset shard: samples in order with their index, and the ways it fails.

Tar parsing and sample grouping are webdataset's (`tar_file_iterator`, `group_by_keys`);
`gopen` opens local paths and `pipe:` commands alike. What we add is the sample index
(the in-shard offset that a resumable position stores) and errors that say which shard.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator

from webdataset.gopen import gopen
from webdataset.tariterators import group_by_keys, tar_file_iterator

Sample = dict[str, object]


class BadSample(Exception):
    """A sample a decoder cannot use; the stream skips it and counts `reason`."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail = reason, detail


class ShardReadError(Exception):
    """The shard stopped being readable (truncated tar, failed pipe) after `samples_read`."""

    def __init__(self, url: str, samples_read: int, cause: BaseException) -> None:
        super().__init__(f"{url}: unreadable after {samples_read} sample(s) ({cause})")
        self.url, self.samples_read, self.cause = url, samples_read, cause


def _files(url: str, stream) -> Iterator[dict]:
    for member in tar_file_iterator(stream):
        member["__url__"] = url
        yield member


def read_shard(url: str, start: int = 0) -> Iterator[tuple[int, Sample]]:
    """(index, raw sample) for every sample of `url` from index `start` on. Samples before
    `start` are grouped but not decoded, which is how a resumed reader skips ahead."""
    index = 0
    stream = gopen(url, "rb")
    try:
        for sample in group_by_keys(_files(url, stream)):
            if index >= start:
                yield index, sample
            index += 1
    except (tarfile.TarError, OSError, EOFError, ValueError) as err:
        raise ShardReadError(url, index, err) from None
    finally:
        try:
            stream.close()
        except OSError:
            pass  # a pipe closed before its command finished writing: we stopped reading
