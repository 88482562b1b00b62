"""Digits CNN -> int8 -> Cortex-M4 firmware under QEMU (same as `edgecomp demo`).

    python examples/digits_demo.py [--target cortex-m4|cortex-m0|host] [--output out/digits]
"""
import argparse
import sys

from edgecomp.demo import main

if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--target", default="cortex-m4")
    p.add_argument("--output", default="out/digits")
    p.add_argument("--quick", action="store_true")
    a = p.parse_args()
    sys.exit(main(target=a.target, out=a.output, quick=a.quick))
