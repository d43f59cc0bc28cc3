"""The options of every verb, one module per group of verbs, and their registration: what the
parser needs and nothing more, so ``harness --help`` stays fast. The handlers they name live in
harness/cli/<group>.py and are imported only when their verb runs."""
