"""`python -m magicseg_hf ...` and `accelerate launch -m magicseg_hf ...`."""

from magicseg_hf.cli import console_main

if __name__ == "__main__":
    console_main()
