"""``python -m training {finetune,scratch,predict,lab} ...``; on several
processes: ``torchrun --nproc-per-node 2 -m training scratch ...``."""
from __future__ import annotations

import argparse
import json
import sys


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(t) for t in text.replace(",", " ").split())


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    f = sub.add_parser("finetune", help="fine-tune a pretrained model on a folder (or .zip) of class folders")
    f.add_argument("data", help="folder with one sub-folder per class (or train/ and val/), or a .zip of one")
    f.add_argument("--architecture", default="efficientnet_lite0", help="any architecture with weights")
    f.add_argument("--out", required=True, help="output folder (must not exist or be empty)")
    f.add_argument("--epochs", type=int, default=3)
    f.add_argument("--lr", type=float, default=0.01)
    f.add_argument("--lrf", type=float, default=0.01, help="final learning-rate factor of the cosine schedule")
    f.add_argument("--batch-size", type=int, default=32)
    f.add_argument("--train-all", action="store_true", help="unfreeze the backbone (default: only the new head)")
    f.add_argument("--no-augment", action="store_true",
                   help="no RandomResizedCrop / flip; with a frozen backbone the features are computed once")
    f.add_argument("--val-fraction", type=float, default=0.2)
    f.add_argument("--seed", type=int, default=0)

    s = sub.add_parser("scratch", help="train a Swin from scratch (the CIFAR seed's recipe by default)")
    s.add_argument("--dataset", choices=["digits", "cifar10"], default="digits")
    s.add_argument("--architecture", default="swin_cifar", help="the Swin whose configuration is the start")
    s.add_argument("--out", required=True)
    s.add_argument("--embed-dim", type=int)
    s.add_argument("--depths", type=_ints, help="blocks per stage, e.g. 2,2")
    s.add_argument("--num-heads", type=_ints, help="heads per stage, e.g. 2,4")
    s.add_argument("--window-size", type=int)
    s.add_argument("--patch-size", type=int)
    s.add_argument("--mlp-ratio", type=float)
    s.add_argument("--drop-path-rate", type=float)
    s.add_argument("--image-size", type=int, help="input side (digits: 32, upsampled from 8)")
    s.add_argument("--epochs", type=int, default=10)
    s.add_argument("--lr", type=float, default=1e-4)
    s.add_argument("--batch-size", type=int, default=64)
    s.add_argument("--optimizer", choices=["adam", "adamw", "sgd"], default="adam")
    s.add_argument("--betas", type=float, nargs=2, default=(0.5, 0.999))
    s.add_argument("--weight-decay", type=float, default=0.0)
    s.add_argument("--schedule", choices=["plateau", "cosine", "constant"], default="plateau")
    s.add_argument("--lrf", type=float, default=0.01)
    s.add_argument("--no-augment", action="store_true")
    s.add_argument("--max-steps", type=int)
    s.add_argument("--val-fraction", type=float, default=0.2)
    s.add_argument("--data-root", default="data", help="where CIFAR-10 is downloaded")
    s.add_argument("--seed", type=int, default=0)

    r = sub.add_parser("predict", help="classify a folder (or .zip) of images into a CSV")
    r.add_argument("inputs", help="folder or .zip of images")
    r.add_argument("--model", required=True, help="a trained model's folder, or an architecture name")
    r.add_argument("--out", required=True, help="CSV file to write")
    r.add_argument("--top-k", type=int, default=5)
    r.add_argument("--batch-size", type=int, default=32)

    from . import lab
    lab.add_arguments(sub.add_parser("lab", help="compare Swin attention variants trained on the digits"))
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from .errors import TrainingInputError
    from .loop import is_main_process
    from . import recipes

    try:
        if args.command == "lab":
            from . import lab
            return lab.run_from_args(args, argv)
        if args.command == "finetune":
            run = recipes.finetune(args.data, args.out, args.architecture, epochs=args.epochs, lr=args.lr,
                                   lrf=args.lrf, batch_size=args.batch_size, train_all=args.train_all,
                                   augment=not args.no_augment, val_fraction=args.val_fraction, seed=args.seed)
        elif args.command == "scratch":
            run = recipes.scratch(args.out, args.dataset, args.architecture, epochs=args.epochs, lr=args.lr,
                                  batch_size=args.batch_size, optimizer=args.optimizer, betas=tuple(args.betas),
                                  weight_decay=args.weight_decay, schedule=args.schedule, lrf=args.lrf,
                                  seed=args.seed, val_fraction=args.val_fraction, augment=not args.no_augment,
                                  image_size=args.image_size, data_root=args.data_root, max_steps=args.max_steps,
                                  embed_dim=args.embed_dim, depths=args.depths, num_heads=args.num_heads,
                                  window_size=args.window_size, patch_size=args.patch_size,
                                  mlp_ratio=args.mlp_ratio, drop_path_rate=args.drop_path_rate)
        else:
            summary = recipes.predict(args.inputs, args.model, args.out, top_k=args.top_k,
                                      batch_size=args.batch_size)
            skipped = f", {summary['skipped']} unreadable files skipped" if summary["skipped"] else ""
            print(f"Wrote {summary['csv']}: {summary['images']} images classified with {summary['model']}{skipped}.")
            return 0
        if is_main_process():
            m = run.metrics
            skipped = f"; {m['skipped_files']} unreadable files skipped" if m.get("skipped_files") else ""
            print(f"Wrote {run.out}: best validation accuracy {m['val_accuracy']:.2%} (epoch {m['best_epoch']}), "
                  f"{m['seconds']:.1f} s on {m['processes']} process{'es' if m['processes'] > 1 else ''}"
                  f"{skipped}.")
    except TrainingInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        import torch.distributed as dist

        if dist.is_initialized():  # every process leaves together, after the main one has written the folder
            dist.barrier()
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
