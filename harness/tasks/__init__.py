"""A task: its spec (task.yaml), items and data, discovery, the TaskKind table and seeded subsets."""

from harness.tasks.kinds import KINDS, TaskKind, TaskType, kind_names, task_kind
from harness.tasks.subsets import select_items
from harness.tasks.task import Item, Task, TaskSpec, discover_tasks, find_task, load_task, target_references

__all__ = [
    "Item", "KINDS", "Task", "TaskKind", "TaskSpec", "TaskType", "discover_tasks", "find_task", "kind_names",
    "load_task", "select_items", "target_references", "task_kind",
]
