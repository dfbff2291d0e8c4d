"""A tailed file hands on every line once: across restarts (from the saved position), rotation by rename, rotation
by copy and truncate, and lines still being written."""

from __future__ import annotations

import os
from pathlib import Path

from bookwarden.monitor.collect.tail import FilePosition, FileTailer


def _write(path: Path, *lines: str, end: str = "\n") -> None:
    with path.open("a") as f:
        f.write("".join(line + end for line in lines))


def _read(tailer: FileTailer, at_most: int | None = None) -> tuple[list[str], FilePosition | None]:
    """Lines handed on (stopping after `at_most`, as a process stopped mid-file would) and the last position."""
    found, position = [], None
    for line, after in tailer.lines():
        found.append(line.rstrip("\n"))
        position = after
        if at_most is not None and len(found) == at_most:
            break
    return found, position


def test_a_restart_mid_file_goes_on_after_the_last_line_taken(tmp_path):
    log = tmp_path / "auth.log"
    _write(log, *(f"line {n}" for n in range(10)))
    first = FileTailer(log)
    taken, saved = _read(first, at_most=4)
    first.close()
    _write(log, "line 10")

    again = FileTailer(log, saved)
    rest, _ = _read(again)

    assert taken + rest == [f"line {n}" for n in range(11)]  # none lost, none repeated


def test_a_file_rotated_by_rename_is_finished_before_the_new_one_is_followed(tmp_path):
    log = tmp_path / "auth.log"
    _write(log, "old 1", "old 2")
    tailer = FileTailer(log)
    assert _read(tailer)[0] == ["old 1", "old 2"]
    _write(log, "old 3")  # written just before the rotation, not yet read
    log.rename(tmp_path / "auth.log.1")
    _write(log, "new 1", "new 2")

    assert _read(tailer)[0] == ["old 3", "new 1", "new 2"]
    _write(log, "new 3")
    assert _read(tailer)[0] == ["new 3"]


def test_a_rotation_while_stopped_finishes_the_old_file_found_by_its_inode(tmp_path):
    log = tmp_path / "auth.log"
    _write(log, "old 1", "old 2", "old 3")
    first = FileTailer(log)
    taken, saved = _read(first, at_most=1)
    first.close()
    log.rename(tmp_path / "auth.log.1")
    _write(log, "new 1")

    again = FileTailer(log, saved)
    rest, after = _read(again)

    assert taken + rest == ["old 1", "old 2", "old 3", "new 1"]
    assert after.inode == os.stat(log).st_ino


def test_copy_truncate_starts_the_file_again_from_its_beginning(tmp_path):
    log = tmp_path / "app.log"
    _write(log, "before 1", "before 2", "before 3")
    tailer = FileTailer(log)
    _, saved = _read(tailer)
    os.truncate(log, 0)  # logrotate copytruncate: the same inode, now empty
    _write(log, "after 1")

    assert _read(tailer)[0] == ["after 1"]
    # A restart from a position saved before the truncation does the same.
    assert _read(FileTailer(log, saved))[0] == ["after 1"]


def test_a_truncated_file_that_grew_past_the_old_offset_is_told_by_its_first_bytes(tmp_path):
    log = tmp_path / "app.log"
    _write(log, "a short first line")
    tailer = FileTailer(log)
    _, saved = _read(tailer)
    os.truncate(log, 0)
    _write(log, "different start, and longer than what was read before", "second")

    assert _read(FileTailer(log, saved))[0] == ["different start, and longer than what was read before", "second"]


def test_a_partial_line_waits_for_its_newline_even_across_a_restart(tmp_path):
    log = tmp_path / "app.log"
    _write(log, "whole")
    _write(log, "half", end="")
    tailer = FileTailer(log)
    taken, saved = _read(tailer)
    assert taken == ["whole"]
    assert saved.offset == len("whole\n")  # the partial line is not passed over
    assert _read(tailer)[0] == []

    again = FileTailer(log, saved)
    _write(log, " and the rest")
    assert _read(again)[0] == ["half and the rest"]


def test_a_rotated_files_partial_last_line_is_handed_on_since_it_can_never_end(tmp_path):
    log = tmp_path / "app.log"
    _write(log, "one")
    tailer = FileTailer(log)
    _read(tailer)
    _write(log, "cut short", end="")
    log.rename(tmp_path / "app.log.1")
    _write(log, "fresh")

    assert _read(tailer)[0] == ["cut short", "fresh"]


def test_a_file_that_does_not_exist_yet_is_picked_up_when_it_appears(tmp_path):
    log = tmp_path / "later.log"
    tailer = FileTailer(log)
    assert _read(tailer)[0] == []
    _write(log, "first")
    assert _read(tailer)[0] == ["first"]


def test_starting_from_now_skips_what_is_there_but_not_a_partial_line(tmp_path):
    from bookwarden.monitor.collect.tail import end_of

    log = tmp_path / "big.log"
    _write(log, "old 1", "old 2")
    _write(log, "half", end="")
    tailer = FileTailer(log, end_of(log))
    _write(log, " done", "next")
    assert _read(tailer)[0] == ["half done", "next"]
    assert end_of(tmp_path / "missing.log") is None
