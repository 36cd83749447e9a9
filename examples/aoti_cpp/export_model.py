"""The Python half of the C++ deployment example: a LeNet5 compiled ahead of time with AOTInductor
into one .pt2 package, plus a batch of images and the logits eager PyTorch gives for them, which
the C++ program (main.cpp) checks its own run against.

    python export_model.py OUT_DIR [--checkpoint lenet5.pt] [--batch 33]
                           [--input-size 28] [--activation tanh] [--pooling avg]

writes OUT_DIR/lenet5.pt2, OUT_DIR/images.f32 and OUT_DIR/logits.f32 (raw little-endian float32:
(batch, 1, S, S) and (batch, 10)). Without --checkpoint the weights are torch.manual_seed(0)'s;
with one, give the variant it was trained as (a state_dict does not say: every variant has the
same parameter shapes).
"""
import argparse
import os

import torch

from lenet_fast import LeNet5, variants


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir")
    parser.add_argument("--checkpoint", help="a state_dict saved by torch.save (stock or lenet_fast LeNet-5)")
    parser.add_argument("--batch", type=int, default=33)
    parser.add_argument("--input-size", type=int, default=28, choices=(28, 32))
    parser.add_argument("--activation", default=variants.DEFAULT_ACTIVATION, choices=variants.ACTIVATIONS)
    parser.add_argument("--pooling", default=variants.DEFAULT_POOLING, choices=variants.POOLINGS)
    args = parser.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)

    torch.manual_seed(0)
    model = LeNet5(input_size=args.input_size, activation=args.activation, pooling=args.pooling).eval()
    if args.checkpoint:
        model.load_state_dict(torch.load(args.checkpoint, map_location="cpu"))
    images = torch.randn(args.batch, 1, args.input_size, args.input_size)
    with torch.no_grad():  # an inference graph: the whole network is one lenet_fast op
        program = torch.export.export(model, (images[:2],),
                                      dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},))
        package = torch._inductor.aoti_compile_and_package(
            program, package_path=os.path.join(args.out_dir, "lenet5.pt2"))
        logits = model(images)
    images.numpy().tofile(os.path.join(args.out_dir, "images.f32"))
    logits.numpy().tofile(os.path.join(args.out_dir, "logits.f32"))
    print(f"wrote {package} and a batch of {args.batch} images with their eager logits")


if __name__ == "__main__":
    main()
