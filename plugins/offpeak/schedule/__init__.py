"""Schedule: exchange calendars, trading dates and off-peak windows per region, timetables."""
