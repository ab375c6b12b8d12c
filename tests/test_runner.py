"""The training runner's process settings."""


def test_keep_freed_memory_tunes_glibc_once():
    """On glibc (this Linux) the allocator settings take (True), and again without effect."""
    import platform

    from analyses.runner import keep_freed_memory

    first = keep_freed_memory()
    assert isinstance(first, bool)
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert first is True
    assert keep_freed_memory() is first
