"""webui v1.10.1 modules/call_queue.py: the lock every generation request holds."""

import threading

queue_lock = threading.Lock()
