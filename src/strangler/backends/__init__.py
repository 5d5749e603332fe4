"""Storage backends, one package per store, each owning its driver and its error table:
``mongo``, ``postgres``, ``supabase_rest``. They implement the ports of ``strangler.core``;
``strangler.runtime`` decides which serves which."""
