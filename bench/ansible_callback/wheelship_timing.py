"""Ansible callback for bench/fleet.py: how long each task took on each host, and each play.

Enabled by ANSIBLE_CALLBACKS_ENABLED=wheelship_timing with this directory in
ANSIBLE_CALLBACK_PLUGINS; writes JSON to the file $WHEELSHIP_TIMING_OUT when the playbook ends:
{"plays": [{"name", "seconds"}], "tasks": [{"play", "task", "host", "status", "seconds"}]}.
"""
import json
import os
import time

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: wheelship_timing
type: aggregate
short_description: per-task and per-play seconds, as JSON, for bench/fleet.py
description:
  - Writes each task's seconds on each host and each play's seconds to $WHEELSHIP_TIMING_OUT.
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "wheelship_timing"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self.started = {}
        self.tasks = []
        self.plays = []
        self.play = None

    def _close_play(self):
        if self.play is not None:
            name, t0 = self.play
            self.plays.append({"name": name, "seconds": time.monotonic() - t0})
        self.play = None

    def v2_playbook_on_play_start(self, play):
        self._close_play()
        self.play = (play.get_name(), time.monotonic())

    def v2_runner_on_start(self, host, task):
        self.started[(host.get_name(), task._uuid)] = time.monotonic()

    def _done(self, result, status):
        key = (result._host.get_name(), result._task._uuid)
        t0 = self.started.pop(key, None)
        if t0 is not None:
            self.tasks.append({
                "play": self.play[0] if self.play else "",
                "task": result._task.get_name(),
                "host": key[0],
                "status": status,
                "seconds": time.monotonic() - t0,
            })

    def v2_runner_on_ok(self, result):
        self._done(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._done(result, "failed")

    def v2_runner_on_skipped(self, result):
        self._done(result, "skipped")

    def v2_runner_on_unreachable(self, result):
        self._done(result, "unreachable")

    def v2_playbook_on_stats(self, stats):
        self._close_play()
        out = os.environ.get("WHEELSHIP_TIMING_OUT")
        if out:
            with open(out, "w") as f:
                json.dump({"plays": self.plays, "tasks": self.tasks}, f)
