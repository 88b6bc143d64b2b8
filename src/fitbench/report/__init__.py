"""What people read: terminal tables (tables), the throughput plot (plot), atomically written files (io).

Parent side only; works on the documents' dicts and never imports a framework."""
