# The script batch 8.7's RunPythonFileNode runs (its original names a missing test.py).
import sys
print("Hello from test.py", sys.argv[1:])
