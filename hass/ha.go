package hass

// This file holds Home Assistant's own lists as data: the MQTT platforms,
// device classes, units per device class and state classes. They come from
// home-assistant/core (mqtt/discovery.py and schemas.py, sensor/const.py DEVICE_CLASS_UNITS and
// DEVICE_CLASS_STATE_CLASSES, binary_sensor/__init__.py, button/__init__.py)
// at HAVersion. The generator uses them to pick units; the conformance
// checker (internal/hacheck) validates against them. Update them together.

// HAVersion is the Home Assistant release the lists below were taken from.
const HAVersion = "2026.8"

// MinHAVersion is the oldest Home Assistant the generated discovery targets:
// default_entity_id (2025.10) and device-based discovery (2024.11, safe
// from 2024.12) are used.
const MinHAVersion = "2025.10"

// Components are the MQTT platforms Home Assistant subscribes to for
// discovery; a config for any other component is never received.
var Components = []string{
	"alarm_control_panel", "binary_sensor", "button", "camera", "climate", "cover", "date",
	"datetime", "device_automation", "device_tracker", "event", "fan", "humidifier", "image",
	"infrared", "lawn_mower", "light", "lock", "notify", "number", "remote", "scene", "select",
	"sensor", "siren", "switch", "tag", "text", "time", "update", "vacuum", "valve", "water_heater",
}

// SensorDeviceClasses are sensor device classes with the HA version that
// added them ("" when older than MinHAVersion).
var SensorDeviceClasses = map[string]string{
	"absolute_humidity": "2025.9", "apparent_power": "", "aqi": "", "area": "2025.9",
	"atmospheric_pressure": "", "battery": "", "blood_glucose_concentration": "",
	"carbon_dioxide": "", "carbon_monoxide": "", "conductivity": "", "current": "",
	"data_rate": "", "data_size": "", "date": "", "distance": "", "duration": "", "energy": "",
	"energy_distance": "", "energy_storage": "", "enum": "", "frequency": "", "gas": "",
	"humidity": "", "illuminance": "", "irradiance": "", "moisture": "", "monetary": "",
	"nitrogen_dioxide": "", "nitrogen_monoxide": "", "nitrous_oxide": "", "ozone": "", "ph": "",
	"pm1": "", "pm10": "", "pm25": "", "power": "", "power_factor": "", "precipitation": "",
	"precipitation_intensity": "", "pressure": "", "reactive_energy": "", "reactive_power": "",
	"signal_strength": "", "sound_pressure": "", "speed": "", "sulphur_dioxide": "",
	"temperature": "", "timestamp": "", "volatile_organic_compounds": "",
	"volatile_organic_compounds_parts": "", "voltage": "", "volume": "", "volume_flow_rate": "",
	"volume_storage": "", "water": "", "weight": "", "wind_direction": "", "wind_speed": "",
}

// BinarySensorDeviceClasses are binary_sensor device classes.
var BinarySensorDeviceClasses = []string{
	"battery", "battery_charging", "carbon_monoxide", "cold", "connectivity", "door",
	"garage_door", "gas", "heat", "light", "lock", "moisture", "motion", "moving", "occupancy",
	"opening", "plug", "power", "presence", "problem", "running", "safety", "smoke", "sound",
	"tamper", "update", "vibration", "window",
}

// ButtonDeviceClasses are button device classes.
var ButtonDeviceClasses = []string{"identify", "restart", "update"}

// StateClasses are the sensor state classes.
var StateClasses = []string{"measurement", "measurement_angle", "total", "total_increasing"}

// EntityCategories are the entity categories.
var EntityCategories = []string{"config", "diagnostic"}

// DeviceClassUnits lists, for the device classes a UPS or an agent uses, the
// units HA accepts (exact strings: "µV" is U+00B5, "μs" is U+03BC, "°" is
// U+00B0). A class that is absent here is not checked for units; a class
// mapped to an empty list takes no unit.
var DeviceClassUnits = map[string][]string{
	"battery":         {"%"},
	"voltage":         {"µV", "mV", "V", "kV", "MV"},
	"current":         {"mA", "A"},
	"power":           {"mW", "W", "kW", "MW", "GW", "TW"},
	"apparent_power":  {"mVA", "VA", "kVA"},
	"reactive_power":  {"mvar", "var", "kvar"},
	"frequency":       {"Hz", "kHz", "MHz", "GHz"},
	"duration":        {"d", "h", "min", "s", "ms", "μs"},
	"temperature":     {"°C", "°F", "K"},
	"humidity":        {"%"},
	"power_factor":    {"%", ""},
	"energy":          {"J", "kJ", "MJ", "GJ", "mWh", "Wh", "kWh", "MWh", "GWh", "TWh", "cal", "kcal", "Mcal", "Gcal"},
	"energy_storage":  {"J", "kJ", "MJ", "GJ", "mWh", "Wh", "kWh", "MWh", "GWh", "TWh", "cal", "kcal", "Mcal", "Gcal"},
	"signal_strength": {"dB", "dBm"},
	"wind_direction":  {"°"},
	"enum":            {},
	"date":            {},
	"timestamp":       {},
}

// DeviceClassStateClasses lists the state classes that fit a device class
// (HA warns on others); absent classes accept any state class.
var DeviceClassStateClasses = map[string][]string{
	"battery":         {"measurement"},
	"voltage":         {"measurement"},
	"current":         {"measurement"},
	"power":           {"measurement"},
	"apparent_power":  {"measurement"},
	"reactive_power":  {"measurement"},
	"frequency":       {"measurement"},
	"duration":        {"measurement", "total", "total_increasing"},
	"temperature":     {"measurement"},
	"humidity":        {"measurement"},
	"power_factor":    {"measurement"},
	"energy":          {"total", "total_increasing"},
	"energy_storage":  {"measurement"},
	"signal_strength": {"measurement"},
	"monetary":        {"total"},
	"wind_direction":  {"measurement_angle"},
	"enum":            {},
	"date":            {},
	"timestamp":       {},
}

// UnitlessNumericClasses are numeric device classes that may have no unit.
var UnitlessNumericClasses = []string{"power_factor", "aqi", "ph"}

// Contains reports whether list holds s.
func Contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
