-- bench/fleet.lua with a new question every request (see there).
FLEET_KEYS = 0
dofile("bench/fleet.lua")
