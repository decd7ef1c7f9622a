"""Fetch and normalise the NER corpora into the local cache ($NER_AR_HOME).

python prepare_data.py                        # the five corpora from the Hugging Face hub
python prepare_data.py --source DIR           # local CoNLL: DIR/<name>/{train,dev,test}.conll
python prepare_data.py --synthetic            # generated corpora (offline demo and tests)
python prepare_data.py --corpora ncbi_disease,bc5cdr --force
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tqdm import tqdm

from nerlab import prepare
from nerlab.console import bars_wanted, no_bars_in_logs
from nerlab.corpora import CORPORA
from nerlab.errors import run_cli
from nerlab.store import Store, data_root


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--source", type=Path, help="folder of local CoNLL corpora")
    src.add_argument("--synthetic", action="store_true", help="generate the synthetic corpora")
    p.add_argument("--corpora", help="comma-separated subset (default: all)")
    p.add_argument("--force", action="store_true", help="rebuild even if the cache is current")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic generator")
    args = p.parse_args(argv)
    no_bars_in_logs()  # datasets (hub downloads) is imported later, by prepare.load_hub

    available = prepare.local_corpora(args.source) if args.source else list(CORPORA)
    names = prepare.parse_names(args.corpora, available)
    store = Store(data_root("synthetic" if args.synthetic else "prepared"))
    print(f"cache: {store.root}")
    done = {}
    bar = len(names) > 1 and bars_wanted()
    for name in tqdm(names, desc="corpora", unit="corpus", disable=not bar):
        if args.source:
            loaded = prepare.load_local(args.source, name)
        elif args.synthetic:
            loaded = prepare.load_synthetic(name, args.seed)
        else:
            loaded = prepare.load_hub(name)
        entry = store.entry(name)
        if entry and entry["source_id"] == loaded.source_id and not args.force:
            tqdm.write(f"{name}: up to date ({entry['source']}), nothing to do")
        else:
            info = {
                "source": loaded.source,
                "source_id": loaded.source_id,
                "missing": loaded.missing,
            }
            entry = store.write(name, loaded.splits, info)
            tqdm.write(f"{name}: prepared from {loaded.source}")
        for note in loaded.notes:
            tqdm.write(f"  note: {note}")
        done[name] = entry
    print()
    print("\n".join(prepare.format_table(done)))
    return 0


if __name__ == "__main__":
    run_cli(main)
