"""The Supabase REST backend (supabase-py over PostgREST): a ``ChatStore`` for bulk jobs."""

from strangler.backends.supabase_rest.store import SupabaseRestStore

__all__ = ["SupabaseRestStore"]
