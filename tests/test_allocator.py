"""keep_freed_memory: its arguments, and the page faults it saves (in child processes: it is process-wide)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from polymodal.allocator import _is_glibc, keep_freed_memory

FAULTS_CODE = """
import mmap, resource, statistics, sys
import numpy as np
import polymodal

def minor_faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

before = minor_faults()  # does this kernel count a fault per 4 KB page? (not with huge pages, nor in gVisor)
fresh = mmap.mmap(-1, 16 << 20)
fresh[::4096] = b"x" * (16 << 8)  # touch each of its 4,096 pages once
counted = minor_faults() - before
if sys.argv[1] == "kept":
    assert polymodal.keep_freed_memory()
pipeline = polymodal.load("tiny-clip")
images = [np.random.default_rng(i).integers(0, 256, (64, 64, 3), dtype=np.uint8) for i in range(8)]
faults = []
for _ in range(12):
    before = minor_faults()
    pipeline.embed_image(images)
    faults.append(minor_faults() - before)
print(counted, statistics.median(faults[3:]))  # the median once the heap has grown to its working size
"""


def page_faults(mode: str) -> float:
    """Median page faults per call of embedding 8 images, in a fresh process; skips the test where the
    kernel does not count a fault per page (touching 4,096 fresh pages counted fewer than 1,000)."""
    out = subprocess.run(
        [sys.executable, "-c", FAULTS_CODE, mode], check=True, capture_output=True, text=True
    )
    counted, median = (float(word) for word in out.stdout.split()[-2:])
    if counted < 1000:
        pytest.skip(
            f"touching 4,096 fresh pages counted {counted:.0f} page faults (huge pages, or no counting): "
            "faults cannot show the allocator's effect here"
        )
    return median


@pytest.mark.parametrize("trim, mmap", [(0, 32), (256, 0), (256, 33)])
def test_bad_thresholds_are_refused(trim, mmap):
    with pytest.raises(ValueError, match="mmap_threshold_mb in 1..32"):
        keep_freed_memory(trim, mmap)


@pytest.mark.skipif(not _is_glibc(), reason="glibc's mallopt only")
def test_embedding_batches_reuse_pages_once_freed_memory_is_kept():
    default, kept = page_faults("default"), page_faults("kept")
    # By default each batch's activations land on fresh pages: about 1,000 faults per call on the
    # development VM, though how often glibc trims depends on the machine (a CI run counted 0).
    assert kept < 10 and kept <= default, (default, kept)
