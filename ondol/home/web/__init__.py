"""The home's web dashboard (``ondol home serve``): see ondol/home/web/app.py."""
