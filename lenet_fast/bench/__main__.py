"""python -m lenet_fast.bench: the benchmark suite (see lenet_fast.bench)."""
from lenet_fast.bench import main

if __name__ == "__main__":
    main()
