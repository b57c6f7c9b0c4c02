-- brainxai auto-routing for Orthanc (tested with Orthanc 1.10).
--
-- When a study becomes stable (no new instance for StableAge seconds), send its original MR
-- series to the brainxai modality with C-STORE. Never route:
--   * non-MR series, and series whose first instance is not an MR storage SOP class
--     (our results are Secondary Capture, Parametric Map and Structured Report objects);
--   * series made by brainxai (Manufacturer contains "brainxai");
--   * series already routed with the same number of instances (our results arriving in the
--     study make it unstable, then stable, again; without this check every result would
--     re-trigger the analysis). A series that gained instances is routed again, whole.
--
-- Lua's SendToModality does not accept study IDs in Orthanc 1.10, so the script posts the
-- series IDs to /modalities/<name>/store. The store is synchronous; a series is marked as
-- routed (user metadata "BrainxaiRouted" = instance count) only once the store succeeded.

local TARGET = 'brainxai'        -- the entry in DicomModalities
local MARK = 'BrainxaiRouted'    -- declared in "UserMetadata"
local MR_STORAGE = {
  ['1.2.840.10008.5.1.4.1.1.4'] = true,    -- MR Image Storage
  ['1.2.840.10008.5.1.4.1.1.4.1'] = true,  -- Enhanced MR Image Storage
  ['1.2.840.10008.5.1.4.1.1.4.3'] = true,  -- Enhanced MR Color Image Storage
  ['1.2.840.10008.5.1.4.1.1.4.4'] = true,  -- Legacy Converted Enhanced MR Image Storage
}

local function HasMetadata(level, id, name)
  local names = ParseJson(RestApiGet('/' .. level .. '/' .. id .. '/metadata'))
  for _, n in ipairs(names) do
    if n == name then
      return true
    end
  end
  return false
end

local function RoutedCount(seriesId)
  if not HasMetadata('series', seriesId, MARK) then
    return 0
  end
  return tonumber(RestApiGet('/series/' .. seriesId .. '/metadata/' .. MARK)) or 0
end

local function IsOriginalMr(series)
  local tags = series['MainDicomTags']
  if tags['Modality'] ~= 'MR' then
    return false
  end
  local manufacturer = string.lower(tags['Manufacturer'] or '')
  if string.find(manufacturer, 'brainxai', 1, true) then
    return false
  end
  local first = series['Instances'][1]
  if first == nil or not HasMetadata('instances', first, 'SopClassUid') then
    return false
  end
  return MR_STORAGE[RestApiGet('/instances/' .. first .. '/metadata/SopClassUid')] == true
end

function OnStableStudy(studyId, tags, metadata)
  local toSend = {}
  local counts = {}
  for _, series in ipairs(ParseJson(RestApiGet('/studies/' .. studyId .. '/series'))) do
    local n = #series['Instances']
    if IsOriginalMr(series) and n > RoutedCount(series['ID']) then
      table.insert(toSend, series['ID'])
      counts[series['ID']] = n
    end
  end
  if #toSend == 0 then
    return
  end
  local body = DumpJson({ Resources = toSend, Synchronous = true }, true)
  local answer = RestApiPost('/modalities/' .. TARGET .. '/store', body)
  if answer == nil then
    print('brainxai routing: store of study ' .. studyId .. ' to ' .. TARGET .. ' failed')
    return
  end
  for id, n in pairs(counts) do
    RestApiPut('/series/' .. id .. '/metadata/' .. MARK, tostring(n))
  end
  print('brainxai routing: sent ' .. #toSend .. ' series of study ' .. studyId .. ' to ' .. TARGET)
end
