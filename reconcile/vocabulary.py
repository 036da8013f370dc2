"""The words recon uses with clerks, defined once: discrepancy kinds, systems, ID statuses,
review decisions, field labels, and how an ID number is masked.

Rules, reports, the review import and the output schemas are built from these tables; the
README's "Discrepancy kinds" table is generated from ``KINDS`` (``kinds_table``) and a test
holds the two together. Nothing here reads a file or the clock.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from .fields import SYSTEMS

__all__ = [
    "Kind",
    "KINDS",
    "KIND_CODES",
    "SEVERITIES",
    "SEVERITY_LABELS",
    "SEVERITY_RANK",
    "PAIR_KINDS",
    "ID_KINDS",
    "NOTICE_BLOCKING",
    "SCHOOL_KINDS",
    "TOWN_KINDS",
    "SYSTEMS",
    "SYSTEM_LABELS",
    "USABLE_ID_STATUSES",
    "ID_STATUS_TEXT",
    "Decision",
    "DECISION_LIST",
    "DECISIONS",
    "DECISION_LABELS",
    "DECISION_CODES",
    "DECISION_LABEL_OF",
    "FIELD_LABELS",
    "NO_SCHOOL",
    "NO_TOWN",
    "kind_label",
    "system_label",
    "kinds_table",
    "mask_id",
    "mask_text",
    "ID_SHAPED",
]


@dataclass(frozen=True)
class Kind:
    """One kind of discrepancy: what it is called, how bad it is, what a clerk can do.

    ``correctable`` names the field a clerk's 更正值 replaces on this kind (``id_number``,
    ``amount``, ``name``), empty when a correction cannot be taken from the sheet;
    ``blocks_notice``: a student with an open item of this kind is left off the 公示名单;
    ``pair``: the item is about one roster × system pair (a confirmed pair settles it);
    ``scope``: which workbooks list it — ``school`` (school and town), ``town`` (town only:
    no school by nature) or ``analyst`` (no clerk workbook: counted in the database alone).
    """

    code: str
    severity: str
    label: str  # short, for the 问题类型 column
    title: str  # one sentence, what the item says
    what: str  # 说明 sheet: what the problem is
    todo: str  # 说明 sheet: what to do
    meaning: str  # README / analysts (English)
    correctable: tuple[str, ...] = ()
    blocks_notice: bool = False
    pair: bool = False
    scope: str = "school"
    texts: Mapping[str, str] = field(default_factory=dict)  # message templates (pl.format), by name


SEVERITIES: tuple[str, ...] = ("high", "medium", "low")
SEVERITY_LABELS: Mapping[str, str] = MappingProxyType({"high": "高", "medium": "中", "low": "低"})
SEVERITY_RANK: Mapping[str, int] = MappingProxyType({s: i for i, s in enumerate(SEVERITIES)})

SYSTEM_LABELS: Mapping[str, str] = MappingProxyType({"dibao": "低保", "filing": "建档立卡"})

NO_SCHOOL = "未注明学校"
NO_TOWN = "未注明乡镇"

_KINDS: tuple[Kind, ...] = (
    Kind(
        "not_found", "high", "两系统均未找到", "两个系统中均未找到该学生",
        "学生在低保和建档立卡两个系统的导出数据中都没有找到（按身份证号、姓名和出生日期、户主信息均未对上）。",
        "核对名单中的姓名和身份证号是否录入正确；向家长或村委会确认家庭是否在低保或建档立卡范围内。"
        "如果同一乡镇或村的学生整批未找到，可能是系统导出不完整，请联系县学生资助管理中心。",
        "in neither system",
        blocks_notice=True,
        texts={"message": "低保和建档立卡两个系统中都没有找到该学生（已按身份证号、姓名与出生日期、户主等方式查找）。"
                          "请核实学生姓名和身份证号，或确认其家庭是否在低保/建档立卡范围内。"},
    ),
    Kind(
        "household_exited", "high", "已脱贫不再享受政策", "家庭已脱贫且不再享受政策",
        "学生家庭在建档立卡系统中为“已脱贫（不再享受政策）”，按政策不再享受建档立卡学生资助。"
        "注意：“已脱贫（享受政策）”的家庭仍然享受资助，不在此列。",
        "向村委会或乡村振兴部门核实家庭当前状态；如确已不再享受政策，请调整资助名单，或核实是否符合其他资助条件。",
        "found only in households that exited poverty with no more policy (已脱贫(不再享受政策)), with the year",
        blocks_notice=True,
    ),
    Kind(
        "dibao_stopped", "high", "低保已停保", "家庭低保已停保或注销",
        "学生家庭在低保系统中的状态为停保或注销。",
        "向民政部门或村委会核实是否已恢复低保；如确已停保，请调整资助类别或名单。",
        "found only in dibao households that are 停保 or 注销",
        blocks_notice=True,
    ),
    Kind(
        "duplicate_claim", "high", "重复申报", "同一学生被重复申报",
        "同一学生在两所学校的名单中都出现，或在同一份名单中出现了不止一次。",
        "与相关学校联系，确认学生实际就读的学校，只保留一处申报。",
        "the same student on two roster rows (two schools, or twice in one roster)",
        blocks_notice=True,
    ),
    Kind(
        "id_mismatch", "medium", "身份证号不一致", "按姓名和出生日期找到，但身份证号不一致",
        "按姓名、出生日期或家庭找到了该学生，但名单和系统中的身份证号不同。"
        "表中身份证号只显示前6位、后4位和两边不一致的位置。",
        "对照户口簿或身份证原件核实，更正错误的一方；如果是系统中有误，请告知主管部门更正。",
        "found by name and birth date, but the ID differs: which digits, which side is probably wrong",
        correctable=("id_number",), blocks_notice=True, pair=True,
    ),
    Kind(
        "id_invalid", "medium", "身份证号无效或损坏", "名单中的身份证号无效或已损坏",
        "名单中的身份证号不符合国家标准：位数不对、校验位错误、出生日期不存在，"
        "或在Excel中被存成了数字（末几位变成0，或显示为4.30524E+17这样的科学计数法）。",
        "先把身份证号一列设为“文本”格式，再对照户口簿重新录入完整的18位号码。",
        "the roster's ID is missing, fails its checksum, has a bad date or length, or was damaged by Excel",
        correctable=("id_number",), blocks_notice=True,
    ),
    Kind(
        "id_fact_conflict", "medium", "出生日期或性别与身份证不符", "出生日期或性别与身份证号不符",
        "名单中的出生日期或性别与身份证号所含信息不一致"
        "（身份证号第7至14位是出生日期，第17位单数为男、双数为女）。",
        "对照户口簿核实，更正错误的一项。",
        "the roster's birth date or gender contradicts its own ID",
        blocks_notice=True,
    ),
    Kind(
        "needs_review", "medium", "疑似记录待确认", "系统中有疑似记录，需人工确认",
        "在系统中找到一条疑似记录，但证据不足以自动确认是同一人（例如姓名只差一个字、出生日期或户主不同）。",
        "对照户口簿核对表中名单与系统两边的姓名、身份证号：是同一人选“确认是同一人”，不是选“不是同一人”。",
        "only a doubtful candidate was found: a clerk decides",
        blocks_notice=True, pair=True,
    ),
    Kind(
        "name_mismatch", "low", "姓名不一致", "按身份证号找到，但姓名不一致",
        "按身份证号找到了该学生，但姓名不同（常见原因：同音字、形近字、生僻字无法录入、多了空格或间隔点）。",
        "对照户口簿核实正确写法，更正名单；如果是系统中有误，请告知主管部门。",
        "found by ID, but the name differs (homophone, look-alike, rare character, ...)",
        correctable=("name",), pair=True,
    ),
    Kind(
        "subsidy_mismatch", "high", "资助金额与标准不符", "资助金额与本县资助标准不符",
        "名单中的资助金额与本县本学年的资助标准不一致（按学段、家庭类别、是否寄宿、年级计算）；说明中写明了应发金额和所依据的标准。",
        "核对学生的学段、年级、是否寄宿和家庭类别是否填写正确；都正确的，按标准更正资助金额。",
        "an eligible student's amount is not the policy's for the row's stage, year, boarding and household "
        "category: `value` the roster's (yearly), `system_value` the expected, the message names the standards",
        correctable=("amount",), blocks_notice=True,
    ),
    Kind(
        "export_incomplete", "high", "系统导出可能不完整", "系统导出可能不完整（该村/乡镇的记录缺失），请重新导出后再核对",
        "该学生所在村或乡镇在今晚的系统导出中几乎没有记录，而名单和另一系统中都有，很可能是导出被截断，而不是学生不符合条件。",
        "不必逐户核查：请联系县学生资助管理中心或系统主管部门重新导出该村（乡镇）的数据。",
        "instead of `not_found` (or beside `dibao_stopped`/`household_exited`): the student's town/village is in "
        "`export_problems` for a system the student wasn't found in",
        blocks_notice=True,
    ),
    Kind(
        "age_stage_mismatch", "medium", "年龄与学段年级不符", "年龄与学段或年级不符",
        "按身份证号中的出生日期计算，学生年龄与所填学段或年级明显不符。",
        "核对身份证号和学段、年级是否填错；确属跳级、留级或晚入学的，在备注中说明。",
        "the age on 1 September (from the ID's birth date; else the matched system ID) doesn't fit the "
        "stage/grade (`checks.toml [age]`)",
        blocks_notice=True,
    ),
    Kind(
        "missed_eligible", "medium", "符合条件但未在名单", "符合资助条件的学龄儿童不在任何资助名单上（控辍保学）",
        "低保或建档立卡家庭中有学龄儿童，但不在任何学校的资助名单上，可能已辍学，也可能漏报（控辍保学）。",
        "由乡镇和村核实该儿童是否在校：在校的通知所在学校补报资助；已辍学的按控辍保学要求劝返。",
        "a school-age child of a qualifying household on no roster (控辍保学), of a stage tonight's rosters cover; "
        "`source`/`file`/`sheet`/`row` and `system_*` point at the system record, `town` and the message say where; "
        "only in the town workbooks",
        scope="town",
    ),
    Kind(
        "missed_other_stage", "low", "未覆盖学段的学龄人口", "符合资助条件但所在学段今晚没有任何资助名单",
        "低保或建档立卡家庭中的在校生，其学段（如本科、大专）今晚没有任何学校报送资助名单，无法核对。",
        "供县资助中心统计：该学段的名单报送后再核对。",
        "like `missed_eligible`, but of a stage no roster covers tonight (e.g. 本科/大专): never in a clerk workbook, "
        "counted per town and stage in the view `missed_by_stage`",
        scope="analyst",
    ),
)

KINDS: Mapping[str, Kind] = MappingProxyType({k.code: k for k in _KINDS})
KIND_CODES: tuple[str, ...] = tuple(KINDS)
PAIR_KINDS: tuple[str, ...] = tuple(k.code for k in _KINDS if k.pair)
ID_KINDS: tuple[str, ...] = tuple(k.code for k in _KINDS if "id_number" in k.correctable)
NOTICE_BLOCKING: tuple[str, ...] = tuple(k.code for k in _KINDS if k.blocks_notice)
SCHOOL_KINDS: tuple[str, ...] = tuple(k.code for k in _KINDS if k.scope == "school")
TOWN_KINDS: tuple[str, ...] = tuple(k.code for k in _KINDS if k.scope in ("school", "town"))

# ID statuses (reconcile.idcard) and the roster-only "student_no" (ID taken from 学籍号).
USABLE_ID_STATUSES: tuple[str, ...] = ("valid", "legacy15")
ID_STATUS_TEXT: Mapping[str, str] = MappingProxyType({
    "valid": "身份证号有效",
    "legacy15": "15位旧身份证号",
    "missing": "名单中没有填写身份证号",
    "student_no": "名单中身份证号一栏为空，已按学籍号（G+身份证号）补齐，请在名单中补填身份证号",
    "checksum": "身份证号校验位不正确（18位中有数字录错或顺序颠倒）",
    "bad_date": "身份证号中的出生日期不是有效日期",
    "bad_length": "身份证号位数不对（应为18位）",
    "bad_chars": "身份证号含有非法字符",
    "number_damaged": "身份证号被Excel存成了数字，最后三位已变成000，无法从表格中恢复",
    "sci_damaged": "身份证号被Excel显示为科学计数法（如4.33124E+17），大部分数字已丢失",
})

@dataclass(frozen=True)
class Decision:
    """One entry of the 核实结论 dropdown and the code stored in ``reviews.decision_code``."""

    code: str
    label: str
    help: str


DECISION_LIST: tuple[Decision, ...] = (
    Decision("confirm", "确认是同一人", "名单学生与系统记录是同一人"),
    Decision("reject", "不是同一人", "系统记录不是该学生，今后不再提示这条记录"),
    Decision("corrected", "已更正", "已改正名单；身份证号、姓名或金额有误的，在“更正值”填写正确的值"),
    Decision("pending", "待核实", "还在核实中"),
)
DECISIONS: Mapping[str, str] = MappingProxyType({d.label: d.code for d in DECISION_LIST})  # label -> code
DECISION_LABELS: tuple[str, ...] = tuple(d.label for d in DECISION_LIST)
DECISION_CODES: tuple[str, ...] = tuple(d.code for d in DECISION_LIST)
DECISION_LABEL_OF: Mapping[str, str] = MappingProxyType({d.code: d.label for d in DECISION_LIST})

FIELD_LABELS: Mapping[str, str] = MappingProxyType({
    "seq": "序号", "school": "学校", "stage": "学段", "grade": "年级", "class_name": "班级",
    "name": "姓名", "gender": "性别", "ethnicity": "民族", "birth_date": "出生日期",
    "id_number": "身份证号", "student_no": "学籍号", "boarding": "是否寄宿",
    "head_name": "户主姓名", "head_id": "户主身份证号", "relation": "与户主关系",
    "town": "乡镇", "village": "村", "aid_item": "资助项目", "amount": "资助金额",
    "phone": "联系电话", "household_size": "保障人数", "dibao_category": "低保类别",
    "monthly_amount": "月保障金额", "approved_date": "批准日期", "status": "低保状态",
    "county_name": "县", "household_no": "户编号", "person_no": "人编号",
    "school_status": "在校生状况", "household_type": "贫困户属性",
    "poverty_status": "脱贫状态", "exit_year": "脱贫年度",
})


def kind_label(code: str | None) -> str:
    """The 问题类型 text of a kind ('' for None; an unknown code is a programming error)."""
    return "" if code is None else KINDS[code].label


def system_label(code: str | None) -> str:
    return "" if code is None else SYSTEM_LABELS[code]


def kinds_table() -> str:
    """The README's "Discrepancy kinds" table (markdown), from ``KINDS``."""
    lines = ["| kind | severity | workbooks | blocks the 公示名单 | a clerk corrects | meaning |", "|---|---|---|---|---|---|"]
    where = {"school": "school, town", "town": "town", "analyst": "none"}
    for k in _KINDS:
        corr = ", ".join(f"`{c}`" for c in k.correctable) or "—"
        lines.append(f"| `{k.code}` | {k.severity} | {where[k.scope]} | {'yes' if k.blocks_notice else 'no'} | {corr} "
                     f"| {k.meaning} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- masking

# At most this many differing positions are revealed in a masked ID.
MAX_REVEALED_DIFFS = 4
_MIN_HIDDEN = 4  # an 18-character ID always keeps at least this many characters hidden

# Anything shaped like an ID in free text: a run of 14+ digits (ASCII or full-width, single
# spaces allowed inside, an X last). A short scientific form (4.30524E+17) shows no more than
# the region; the exact one (4.33124200501231E+17) holds such a run and is masked.
ID_SHAPED = re.compile(r"(?<![0-9０-９])[0-9０-９](?:[ \u3000]?[0-9０-９]){13,}(?:[XxＸｘ])?(?![0-9０-９])")


def mask_id(value: str | None, keep: Iterable[int] = ()) -> str:
    """Mask an ID number: ``433124********123X``.

    16+ characters: the first 6 (region) and last 4 stay; 14–15 (legacy 15-digit): first 6
    and last 3 (the sequence); 5–13 characters (damaged): first 2 and last 2 stay; 4 or
    fewer: all masked. ``keep`` adds 0-based positions to show (where roster and system
    differ), but only when that still hides at least 4 characters and reveals no more than
    4 extra; otherwise ``keep`` is ignored. None or '' gives ''.
    """
    if value is None:
        return ""
    text = str(value)
    n = len(text)
    if n == 0:
        return ""
    if n >= 14 and not keep:  # the common case, without building position sets
        tail = 4 if n >= 16 else 3
        return text[:6] + "*" * (n - 6 - tail) + text[n - tail:]
    if n >= 16:
        shown = set(range(6)) | set(range(n - 4, n))
    elif n >= 14:  # legacy 15-digit: the last 4 would include a birth-date digit
        shown = set(range(6)) | set(range(n - 3, n))
    elif n >= 5:
        shown = {0, 1, n - 2, n - 1}
    else:
        shown = set()
    extra = {int(p) for p in (keep or ()) if p is not None and 0 <= int(p) < n} - shown
    hidden = n - len(shown)
    if extra and len(extra) <= min(MAX_REVEALED_DIFFS, hidden - _MIN_HIDDEN):
        shown |= extra
    return "".join(c if i in shown else "*" for i, c in enumerate(text))


def mask_text(text: str | None) -> str:
    """Every ID-shaped run inside free text masked with ``mask_id``; '' for None.

    For cells, log lines, stored errors and exception texts alike."""
    if text is None:
        return ""
    return ID_SHAPED.sub(lambda m: mask_id(m.group(0)), str(text))
