"""Generated from proto/ by sdk/python/genproto.py (make proto). Do not edit."""
