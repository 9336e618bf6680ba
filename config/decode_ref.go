package config

import "reflect"

func refValue(cfg *Config) reflect.Value { return reflect.ValueOf(cfg).Elem() }
