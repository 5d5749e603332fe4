"""strangler: a dual-write strangler proxy that moves a live chat app from MongoDB to Supabase."""

__version__ = "0.1.0"
