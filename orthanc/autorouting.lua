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
-- series IDs to /modalities/<name>/store as an asynchronous Orthanc job. A series is marked
-- as routed (user metadata "BrainxaiRouted" = instance count) only when that job succeeded
-- (OnJobSuccess). A job that failed (brainxai down, or an instance refused with 0xA700
-- "out of resources" because brainxai could not record it yet) is re-submitted
-- (POST /jobs/<id>/resubmit) after a delay, RETRY_DELAYS[k] seconds before the k-th retry;
-- after the last one the failure is printed and the series stay unmarked (send them
-- manually, or they go with the study's next routing).
--
-- Orthanc 1.10 has no timer for Lua (OnHeartBeat needs 1.11.1+), so the delay is a sleep
-- in OnJobFailure: it holds Orthanc's Lua thread (other Lua events wait, DICOM and REST do
-- not), which is why the delays are short. The jobs being retried are known to this Lua
-- context only: after a restart of Orthanc a failed store is not retried.

local TARGET = 'brainxai'        -- the entry in DicomModalities
local MARK = 'BrainxaiRouted'    -- declared in "UserMetadata"
local RETRY_DELAYS = { 2, 5, 10, 20 }  -- seconds before each re-submission of a failed store
local MR_STORAGE = {
  ['1.2.840.10008.5.1.4.1.1.4'] = true,    -- MR Image Storage
  ['1.2.840.10008.5.1.4.1.1.4.1'] = true,  -- Enhanced MR Image Storage
  ['1.2.840.10008.5.1.4.1.1.4.3'] = true,  -- Enhanced MR Color Image Storage
  ['1.2.840.10008.5.1.4.1.1.4.4'] = true,  -- Legacy Converted Enhanced MR Image Storage
}

-- Store jobs of ours not yet finished: job ID -> { study, counts (series ID -> n), retries }
local pending = {}

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

local function Sleep(seconds)
  os.execute('sleep ' .. tonumber(seconds))
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
  local body = DumpJson({ Resources = toSend, Synchronous = false }, true)
  local answer = RestApiPost('/modalities/' .. TARGET .. '/store', body)
  if answer == nil then
    print('brainxai routing: store of study ' .. studyId .. ' to ' .. TARGET .. ' failed')
    return
  end
  local jobId = ParseJson(answer)['ID']
  pending[jobId] = { study = studyId, counts = counts, retries = 0 }
  print('brainxai routing: sending ' .. #toSend .. ' series of study ' .. studyId .. ' to '
        .. TARGET .. ' (job ' .. jobId .. ')')
end

function OnJobSuccess(jobId)
  local job = pending[jobId]
  if job == nil then
    return
  end
  pending[jobId] = nil
  for id, n in pairs(job.counts) do
    RestApiPut('/series/' .. id .. '/metadata/' .. MARK, tostring(n))
  end
  print('brainxai routing: sent the series of study ' .. job.study .. ' to ' .. TARGET)
end

function OnJobFailure(jobId)
  local job = pending[jobId]
  if job == nil then
    return
  end
  job.retries = job.retries + 1
  local delay = RETRY_DELAYS[job.retries]
  if delay == nil then
    pending[jobId] = nil
    print('brainxai routing: store of study ' .. job.study .. ' to ' .. TARGET .. ' failed '
          .. (job.retries - 1) .. ' retries: given up (job ' .. jobId .. ')')
    return
  end
  print('brainxai routing: store of study ' .. job.study .. ' to ' .. TARGET .. ' failed; retry '
        .. job.retries .. ' in ' .. delay .. ' s (job ' .. jobId .. ')')
  Sleep(delay)
  if RestApiPost('/jobs/' .. jobId .. '/resubmit', '{}') == nil then
    pending[jobId] = nil
    print('brainxai routing: store of study ' .. job.study .. ' to ' .. TARGET
          .. ' could not be re-submitted (job ' .. jobId .. ')')
  end
end
