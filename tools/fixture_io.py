"""Writing fixture folders: shared by the fixture generators."""
import json


def write(path, doc):
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")


def write_fixtures(root, valid, invalid):
    """Writes `valid` ({name: doc}) and `invalid` ({name: (doc, status, [(expression, code)])})
    under root/valid and root/invalid. Stale files go; a valid case's .expected.json (written by
    `UPDATE_EXPECTED=1 cargo test --test fixtures`) is kept while the case exists."""
    valid_dir, invalid_dir = root / "valid", root / "invalid"
    valid_dir.mkdir(parents=True, exist_ok=True)
    invalid_dir.mkdir(parents=True, exist_ok=True)
    for old in invalid_dir.glob("*.json"):
        old.unlink()
    for old in valid_dir.glob("*.json"):
        if old.name.removesuffix(".expected.json").removesuffix(".json") not in valid or not old.name.endswith(".expected.json"):
            old.unlink()
    for name, doc in valid.items():
        write(valid_dir / f"{name}.json", doc)
    for name, (doc, status, issues) in invalid.items():
        write(invalid_dir / f"{name}.json", doc)
        write(invalid_dir / f"{name}.expected.json", {"status": status, "issues": [{"expression": e, "code": c} for e, c in issues]})
