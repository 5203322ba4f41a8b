-- bench/fleet.lua cycling through 1024 questions (see there).
FLEET_KEYS = 1024
dofile("bench/fleet.lua")
