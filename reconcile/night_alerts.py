"""What a person is told about a night that failed or never ran: pure text and dates.

The flow's failure hook and ``recon status`` write :func:`failure_note` into the night's
reports folder (reconcile.night_reports) and pass it to the configured notifier
(reconcile.notify). Reasons are the runs' stored error texts, which never hold cell values.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import polars as pl

__all__ = ["LOOKBACK_NIGHTS", "failure_note", "missed_nights"]

LOOKBACK_NIGHTS = 7  # nights looked back for a missed one (older ones were told already)

_WHAT_TO_DO = (
    "请按以下步骤处理：\n"
    "1. 看上面的原因。常见原因：收件箱（inbox）文件夹不存在或为空、配置文件有误、磁盘空间不足、"
    "数据库被其他程序以读写方式打开、进程被中断（断电、重启、被结束）。\n"
    "2. 解决后重新运行当晚的核对：\n"
    "       .venv/bin/recon run --inbox <收件箱> --db {db} --reports {reports}\n"
    "   （与定时任务相同的参数；同一晚重跑会替换该晚的结果。）\n"
    "3. 运行日志中有每一步的记录；数据库 runs 表的 error 列记有同样的原因。\n"
    "4. 在本次失败之前最后一次成功运行的核实表仍然有效，可以继续使用。\n"
)


def failure_note(*, night: date, kind: str, reason: str, run_id: str | None, when: datetime,
                 db: str, reports: str) -> str:
    """The 运行失败说明.txt of a night: what failed, when, why, what to do. ``kind`` is
    ``failed`` (a run ended in failure) or ``missed`` (no run succeeded that night)."""
    what = ("当晚的学生资助核对运行失败，本晚没有生成新的核实表。" if kind == "failed"
            else "当晚没有完成学生资助核对（定时任务没有运行、被中断，或运行失败），本晚没有新的核实表。")
    lines = [
        f"学生资助核对 —— {night.isoformat()} 运行{'失败' if kind == 'failed' else '缺失'}说明",
        "",
        f"发生了什么：{what}",
        f"发现时间：{when.strftime('%Y-%m-%d %H:%M')}",
        f"运行编号：{run_id or '（无）'}",
        f"原因：{reason or '（未记录原因）'}",
        "",
        _WHAT_TO_DO.format(db=db, reports=reports),
    ]
    return "\n".join(lines)


def missed_nights(runs: pl.DataFrame, until: date, lookback: int = LOOKBACK_NIGHTS) -> list[tuple[date, str, str | None]]:
    """Nights from the first recorded one (at most ``lookback`` back) through ``until``
    without a succeeded run: (night, reason, run_id of its last run or None)."""
    nights = runs.filter(pl.col("night").is_not_null())
    if nights.height == 0:
        return []
    first = max(nights.get_column("night").min(), until - timedelta(days=lookback - 1))  # type: ignore[operator]
    out: list[tuple[date, str, str | None]] = []
    day = first
    while day <= until:
        of_night = nights.filter(pl.col("night") == day)
        if not of_night.filter(pl.col("status").is_in(["succeeded", "superseded"])).height:
            if of_night.height:
                last = of_night.sort("started_at", nulls_last=False).row(-1, named=True)
                reason = f"该晚最后一次运行的状态为 {last['status']}：{last['error'] or '（没有记录原因）'}"
                out.append((day, reason, last["run_id"]))
            else:
                out.append((day, "该晚没有任何运行记录（定时任务没有启动，或机器未开机）", None))
        day += timedelta(days=1)
    return out
