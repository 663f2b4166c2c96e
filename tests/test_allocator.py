"""keep_freed_memory: its arguments, and the page faults it saves (in child processes: it is process-wide)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from polymodal.allocator import _is_glibc, keep_freed_memory

FAULTS_CODE = """
import resource, statistics, sys
import numpy as np
import polymodal
if sys.argv[1] == "kept":
    assert polymodal.keep_freed_memory()
pipeline = polymodal.load("tiny-clip")
images = [np.random.default_rng(i).integers(0, 256, (64, 64, 3), dtype=np.uint8) for i in range(8)]
faults = []
for _ in range(12):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    pipeline.embed_image(images)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(statistics.median(faults[3:]))  # after the heap has grown to its working size
"""


def page_faults(mode: str) -> float:
    """Median page faults per call of embedding 8 images, in a fresh process."""
    out = subprocess.run(
        [sys.executable, "-c", FAULTS_CODE, mode], check=True, capture_output=True, text=True
    )
    return float(out.stdout.split()[-1])


@pytest.mark.parametrize("trim, mmap", [(0, 32), (256, 0), (256, 33)])
def test_bad_thresholds_are_refused(trim, mmap):
    with pytest.raises(ValueError, match="mmap_threshold_mb in 1..32"):
        keep_freed_memory(trim, mmap)


@pytest.mark.skipif(not _is_glibc(), reason="glibc's mallopt only")
def test_embedding_batches_reuse_pages_once_freed_memory_is_kept():
    default, kept = page_faults("default"), page_faults("kept")
    assert default > 200  # each batch's activations land on fresh pages (about 1,000 here)
    assert kept < 10, (default, kept)
